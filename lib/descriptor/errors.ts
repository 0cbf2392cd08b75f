/** A descriptor could not be encoded or decoded; the message names the field and the reason. */
export class DescriptorError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "DescriptorError";
  }
}

/** The direction a check runs in; encoder and decoder share checks but not messages. */
export type Op = "encode" | "decode";

/** Throws "Cannot <op> descriptor: <reason>". */
export function fail(op: Op, reason: string, options?: ErrorOptions): never {
  throw new DescriptorError(`Cannot ${op} descriptor: ${reason}`, options);
}
