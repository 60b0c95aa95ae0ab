import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runCli } from './agent-process.js';

test('usage errors exit 2 with commander\'s message; --version and --help exit 0', async () => {
  const cases: [args: string[], code: number, output: RegExp][] = [
    [['doctor', '--bogus'], 2, /unknown option '--bogus'/],
    [['run', '--bogus'], 2, /unknown option '--bogus'/],
    [['nosuchcmd'], 2, /unknown command 'nosuchcmd'/],
    // Only the named command is loaded; an unknown one loads them all, for the suggestion.
    [['rnu'], 2, /unknown command 'rnu'\n\(Did you mean run\?\)/],
    [['demo', '--duration', 'abc'], 2, /option '--duration <seconds>' argument 'abc' is invalid\. must be a whole number from 1 to 31536000/],
    [['demo', '--summary-every', '-5'], 2, /option '--summary-every <seconds>' argument '-5' is invalid/],
    [['demo', '--seed', '1.5'], 2, /option '--seed <n>' argument '1\.5' is invalid/],
    [['--version'], 0, /^\d+\.\d+\.\d+/],
    [['analyze', '--help'], 0, /Exit status: 0 analysed; 1 bad input/],
  ];
  for (const [args, code, output] of cases) {
    const result = await runCli(args);
    assert.equal(result.code, code, `${args.join(' ')}: ${result.stderr}`);
    assert.match(result.stdout + result.stderr, output, args.join(' '));
    assert.doesNotMatch(result.stderr, /^tokenwatt: /m, 'commander\'s message is not printed twice');
  }
});
