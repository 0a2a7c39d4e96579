"use client";

import { useCallback, useEffect, useRef, useState } from "react";

import type { Toast } from "../Toasts";

export const TOAST_MS = 15_000;
export const MAX_TOASTS = 5;

/** Notifications shown for TOAST_MS, newest first, at most MAX_TOASTS. Every timer is cleared
 * when its toast goes (dismissed, replaced) and on unmount. */
export function useToasts(): { toasts: Toast[]; notify: (toast: Toast) => void; dismiss: (id: string) => void } {
  const [toasts, setToasts] = useState<Toast[]>([]);
  const timers = useRef(new Map<string, ReturnType<typeof setTimeout>>());

  const dismiss = useCallback((id: string) => {
    const timer = timers.current.get(id);
    if (timer !== undefined) clearTimeout(timer);
    timers.current.delete(id);
    setToasts((shown) => shown.filter((t) => t.id !== id));
  }, []);

  const notify = useCallback(
    (toast: Toast) => {
      setToasts((shown) => [toast, ...shown.filter((t) => t.id !== toast.id)].slice(0, MAX_TOASTS));
      const previous = timers.current.get(toast.id);
      if (previous !== undefined) clearTimeout(previous);
      timers.current.set(
        toast.id,
        setTimeout(() => dismiss(toast.id), TOAST_MS),
      );
    },
    [dismiss],
  );

  useEffect(() => {
    const pending = timers.current;
    return () => {
      for (const timer of pending.values()) clearTimeout(timer);
      pending.clear();
    };
  }, []);

  return { toasts, notify, dismiss };
}
