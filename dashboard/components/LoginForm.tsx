// A plain HTML form: it works before (and without) JavaScript.

export default function LoginForm({ reason }: { reason: string }) {
  return (
    <main className="login">
      <h1>tapewire</h1>
      <form method="post" action="/session" className="login-form" aria-describedby="login-reason">
        <p id="login-reason" role="alert" className="login-reason">
          {reason}
        </p>
        <label htmlFor="token">Access token (JWT)</label>
        <textarea id="token" name="token" rows={4} required maxLength={8192} autoFocus spellCheck={false} autoComplete="off" />
        <button type="submit">Log in</button>
      </form>
    </main>
  );
}
