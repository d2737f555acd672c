/**
 * `node resident.js N`: opens N dummy devices (each with its worker and rings) in a fresh process
 * and prints its resident memory in MiB, for `npm run bench`.
 */
import { NetdevManager } from '../dist/index.js';

const count = Number(process.argv[2]);
const mgr = new NetdevManager();
for (let i = 0; i < count; i++) await mgr.open(`dummy:rss${i}`);
await new Promise((resolve) => setTimeout(resolve, 300));
console.log((process.memoryUsage().rss / 2 ** 20).toFixed(1));
await mgr.close();
