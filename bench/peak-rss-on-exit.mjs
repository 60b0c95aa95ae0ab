// Loaded into a measured child process (node --import): at exit, writes its peak RSS to fd 3 as JSON.
import { writeSync } from 'node:fs';

process.on('exit', () => {
  writeSync(3, `${JSON.stringify({ maxRssKb: process.resourceUsage().maxRSS })}\n`);
});
