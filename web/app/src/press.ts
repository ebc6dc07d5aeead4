/** A long press on a touch screen opens an item's action menu. Android's browsers send a
 * `contextmenu` event for it (handled beside this); iOS Safari sends none, so a held touch
 * that does not move opens it here, and the click that follows the release is swallowed. */
const HOLD_MS = 500;

export function longPress(open: () => void): {
  onTouchstart: (event: TouchEvent) => void;
  onTouchmove: () => void;
  onTouchend: () => void;
  /** true once: the click that ends a long press (the caller ignores that click) */
  swallowClick: () => boolean;
} {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let fired = false;
  const cancel = (): void => {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
  };
  return {
    onTouchstart: (event) => {
      if (event.touches.length !== 1) return;
      fired = false;
      cancel();
      timer = setTimeout(() => {
        timer = undefined;
        fired = true;
        open();
      }, HOLD_MS);
    },
    onTouchmove: cancel,
    onTouchend: cancel,
    swallowClick: () => {
      const was = fired;
      fired = false;
      return was;
    },
  };
}
