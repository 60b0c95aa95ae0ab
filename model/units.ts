/**
 * Typed units. Joules, watts and milliseconds are all `number` at run time; the brands make
 * the compiler refuse to pass watts where joules are expected (Kepler's `Energy`/`Power`).
 * Arithmetic on branded values yields plain numbers, so re-brand results with the helpers.
 */
export type Joules = number & { readonly __unit: 'J' };
export type Watts = number & { readonly __unit: 'W' };
/** Wall-clock time, milliseconds since the Unix epoch. */
export type EpochMs = number & { readonly __unit: 'epoch-ms' };
/** A duration in milliseconds. */
export type Millis = number & { readonly __unit: 'ms' };

export const joules = (value: number): Joules => value as Joules;
export const watts = (value: number): Watts => value as Watts;
export const epochMs = (value: number): EpochMs => value as EpochMs;
export const millis = (value: number): Millis => value as Millis;

/** Energy of a constant power held for a duration. */
export const energyOf = (power: Watts, duration: Millis): Joules => joules((power * duration) / 1000);
/** Mean power of an energy spent over a duration. */
export const powerOf = (energy: Joules, duration: Millis): Watts =>
  watts(duration > 0 ? (energy * 1000) / duration : 0);

export const JOULES_PER_KWH = 3_600_000;
export const kwhFromJoules = (energy: Joules): number => energy / JOULES_PER_KWH;
