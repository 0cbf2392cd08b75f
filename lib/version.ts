/** The program's version, reported by `--version` and exchanged when agents join. */
export const VERSION = "0.1.0";

/** Control-plane protocol version: a master refuses agents that speak another one. */
export const PROTOCOL_VERSION = 1;
