// Copyright (C) 2026 The Snowflock authors. SPDX-License-Identifier: GPL-2.0-or-later
/** Snowflock's public TypeScript API. */
export { startMaster } from "./lib/control/master_service.ts";
export type { MasterService, MasterServiceOptions } from "./lib/control/master_service.ts";
export { startAgent } from "./lib/control/agent_service.ts";
export type { AgentService, AgentServiceOptions } from "./lib/control/agent_service.ts";
export { ClientError, MasterClient } from "./lib/control/client.ts";
export type { ClusterView, HostView, StatusView, TicketView } from "./lib/control/messages.ts";
export type { Allocator, Grant, Reclaim, SlotRequest } from "./lib/allocator/mod.ts";
export { createLogger } from "./lib/log.ts";
export { VERSION } from "./lib/version.ts";
