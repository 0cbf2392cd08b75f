/** Whether a backend can run on this host, and if not, why. */
export type Availability = { available: true } | { available: false; reason: string };
