// Whether this monitor is the one that acts. Leader-only work (scheduled
// health checks today; stale marks and restarts once monitors run as a set
// with a lease) asks this one function, so election plugs in here alone.
// Until then a monitor is the sole monitor of what it watches.

export type IsLeader = () => boolean;

export const soleMonitor: IsLeader = () => true;
