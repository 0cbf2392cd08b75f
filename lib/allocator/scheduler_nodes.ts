/** Mapping resource-manager nodes (Slurm nodes, EGO hosts) to the agents that are them. */
import type { HostSlots } from "./allocator.ts";

/**
 * Agents by the node name they have in the resource manager (`schedulerNode`,
 * else their own name). When two agents claim one node, the first by name wins.
 */
export function hostsBySchedulerNode(hosts: HostSlots[]): Map<string, HostSlots> {
  const byNode = new Map<string, HostSlots>();
  for (const h of [...hosts].sort((a, b) => a.name.localeCompare(b.name))) {
    const node = h.schedulerNode ?? h.name;
    if (!byNode.has(node)) byNode.set(node, h);
  }
  return byNode;
}
