/** mcdist: multicast page distribution, the PageServer/PageClient transport of lib/memory/transport.ts. */
export {
  type McdistClient,
  type McdistClientOptions,
  McdistError,
  openMcdistClient,
} from "./client.ts";
export {
  DEFAULT_GROUP,
  DEFAULT_GROUPS,
  DEFAULT_MTU,
  DEFAULT_PORT,
  DEFAULT_TTL,
  groupFor,
  type McdistConfig,
  resolveConfig,
} from "./config.ts";
export { type FlowOptions } from "./flow.ts";
export { type McdistStatus, probeMulticast } from "./probe.ts";
export {
  type McdistForkCounters,
  type McdistServer,
  type McdistServerOptions,
  startMcdistServer,
} from "./server.ts";
