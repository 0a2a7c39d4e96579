"use client";

export interface Toast {
  id: string;
  text: string;
  tone: "good" | "bad" | "info";
}

/** Notifications (a triggered alert, say): announced to screen readers, dismissed by a click. */
export default function Toasts({ toasts, dismiss }: { toasts: Toast[]; dismiss: (id: string) => void }) {
  return (
    <div className="toasts" role="status" aria-live="assertive" data-testid="toasts">
      {toasts.map((toast) => (
        <div key={toast.id} className={`toast toast-${toast.tone}`} data-testid="toast">
          <span>{toast.text}</span>
          <button type="button" aria-label="Dismiss" onClick={() => dismiss(toast.id)}>
            ×
          </button>
        </div>
      ))}
    </div>
  );
}
