/**
 * Dropping root after binding, as memcached's and gearmand's `-u` do.
 *
 * @module
 */

import { execFileSync } from 'node:child_process';

/**
 * Switches the process (every thread shares its credentials) to `user` and that user's primary group, clearing
 * supplementary groups. A no-op for `root` or when already running as `user`. Not root: with `requireRoot`
 * (gearmand: "Must be root to switch users.") it throws, otherwise (memcached ignores `-u` then) it does nothing.
 */
export function switchUser(user: string, options: { requireRoot?: boolean } = {}): void {
  if (process.getuid?.() !== 0) {
    if (!options.requireRoot) return;
    const me = execFileSync('id', ['-un'], { encoding: 'utf8' }).trim();
    if (me === user) return;
    throw new Error('Must be root to switch users.');
  }
  if (user === 'root') return;
  const gid = Number(execFileSync('id', ['-g', user], { encoding: 'utf8' }).trim());
  process.setgroups?.([]);
  process.setgid!(gid);
  process.setuid!(user);
}
