/** A guest module that cannot be loaded or prepared for forking. */
export class GuestError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "GuestError";
  }
}

/** A VM that cannot be started, resumed or driven. */
export class VmError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "VmError";
  }
}
