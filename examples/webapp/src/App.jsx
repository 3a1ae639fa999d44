import { useCallback, useEffect, useRef, useState } from 'react';
import { usePlaidLink } from 'react-plaid-link';
import { api } from './api.js';

const POLL_MS = 1500;

// Institution names come from Link's onSuccess metadata; Safeclose's status
// route knows only the institution_id.
function rememberInstitution(itemID, institution) {
  if (itemID && institution) localStorage.setItem('inst:' + itemID, institution.name);
}
function institutionName(item) {
  return localStorage.getItem('inst:' + item.item_id) || item.institution_id;
}

const STATE_TEXT = {
  ok: 'Connected',
  login_required: 'Needs you to log in again',
  pending_expiration: 'Access expires soon',
  pending_disconnect: 'Will disconnect soon',
  revoked: 'Access revoked',
};

export default function App() {
  const [user, setUser] = useState(undefined); // undefined: checking; null: signed out
  const [items, setItems] = useState([]);
  const [link, setLink] = useState(null); // {token, mode, itemID}
  const [notice, setNotice] = useState(null);
  const [error, setError] = useState(null);
  const [exitError, setExitError] = useState(null);
  const [events, setEvents] = useState([]);
  const openWhenReady = useRef(false);
  const linkRef = useRef(null);
  linkRef.current = link;

  const refresh = useCallback(async () => {
    try {
      const s = await api('GET', '/api/plaid/status');
      setItems(s.items || []);
    } catch (e) {
      if (e.status === 401) setUser(null);
      else setError(e.message);
    }
  }, []);

  useEffect(() => {
    api('GET', '/api/me').then(
      (me) => setUser(me.user),
      () => setUser(null)
    );
  }, []);

  useEffect(() => {
    if (!user) return undefined;
    refresh();
    const t = setInterval(refresh, POLL_MS); // webhooks change item states server-side
    return () => clearInterval(t);
  }, [user, refresh]);

  const onSuccess = useCallback(
    async (publicToken, metadata) => {
      const l = linkRef.current;
      setLink(null);
      setExitError(null);
      try {
        if (l && l.mode === 'update') {
          // Update mode: the item keeps its access token; nothing to exchange.
          setNotice('Reconnected ' + (metadata.institution ? metadata.institution.name : 'your bank'));
        } else {
          const r = await api('POST', '/api/plaid/exchange', { public_token: publicToken });
          rememberInstitution(r.item_id, metadata.institution);
          setNotice(
            'Connected ' + (metadata.institution ? metadata.institution.name : r.institution_id) +
              (r.persisted ? '' : ' (not saved: ' + (r.persist_hint || 'see the proxy log') + ')')
          );
        }
      } catch (e) {
        setError(e.message);
      }
      refresh();
    },
    [refresh]
  );

  const onExit = useCallback((err, metadata) => {
    setLink(null);
    if (err) {
      setExitError({ code: err.error_code, message: err.display_message || err.error_message, status: metadata.status });
    }
  }, []);

  const onEvent = useCallback((name) => {
    if (name === 'TRANSITION_VIEW') return; // informational, one per pane
    setEvents((ev) => [...ev.slice(-19), name]);
  }, []);

  const { open, ready } = usePlaidLink({ token: link ? link.token : null, onSuccess, onExit, onEvent });

  useEffect(() => {
    if (ready && openWhenReady.current) {
      openWhenReady.current = false;
      open();
    }
  }, [ready, open]);

  async function startLink(itemID) {
    setError(null);
    setExitError(null);
    setNotice(null);
    setEvents([]);
    try {
      const r = await api('POST', '/api/plaid/link-token', itemID ? { item_id: itemID } : undefined);
      openWhenReady.current = true;
      setLink({ token: r.link_token, mode: r.mode, itemID });
    } catch (e) {
      setError(e.message);
    }
  }

  async function signIn(ev) {
    ev.preventDefault();
    setError(null);
    const name = new FormData(ev.target).get('user');
    try {
      const r = await api('POST', '/signin', { user: name });
      setUser(r.user);
    } catch (e) {
      setError(e.message);
    }
  }

  async function signOut() {
    await api('POST', '/signout').catch(() => {});
    setItems([]);
    setUser(null);
  }

  if (user === undefined) return <p className="muted">Loading…</p>;

  if (user === null) {
    return (
      <main>
        <h1>Acme Budget</h1>
        <form data-testid="signin" onSubmit={signIn} className="card">
          <h2>Sign in</h2>
          <p className="muted">Demo sign-in: any name, no password. The app sets a session cookie that Safeclose's auth plugin verifies.</p>
          <label>
            Name <input name="user" data-testid="signin-user" defaultValue="alice" pattern="[a-z][a-z0-9_\-]{0,31}" required />
          </label>
          <button type="submit" data-testid="signin-submit">Sign in</button>
        </form>
        {error && <p className="error" data-testid="error">{error}</p>}
      </main>
    );
  }

  return (
    <main>
      <header>
        <h1>Acme Budget</h1>
        <span data-testid="user">
          Signed in as <b>{user}</b> <button onClick={signOut} data-testid="signout">Sign out</button>
        </span>
      </header>
      <section className="card">
        <h2>Your banks</h2>
        <ul data-testid="items" className="items">
          {items.length === 0 && <li className="muted">No bank connected yet.</li>}
          {items.map((it) => (
            <li key={it.item_id} data-testid="item" data-state={it.state} data-item-id={it.item_id}>
              <span className="inst">
                {institutionName(it)} <code className="muted">{it.item_id}</code>
              </span>
              <span className={'state ' + it.state}>{STATE_TEXT[it.state] || it.state}</span>
              {it.state === 'login_required' && (
                <button data-testid="reconnect" onClick={() => startLink(it.item_id)} disabled={!!link}>
                  Reconnect
                </button>
              )}
            </li>
          ))}
        </ul>
        <button data-testid="connect" className="primary" onClick={() => startLink()} disabled={!!link}>
          Connect a bank
        </button>
      </section>
      {notice && <p className="notice" data-testid="notice">{notice}</p>}
      {exitError && (
        <p className="error" data-testid="exit-error" data-code={exitError.code}>
          Link closed with an error: {exitError.code}: {exitError.message}
        </p>
      )}
      {error && <p className="error" data-testid="error">{error}</p>}
      {events.length > 0 && (
        <p className="muted events" data-testid="events">
          Link events: {events.join(' → ')}
        </p>
      )}
    </main>
  );
}
