/*
 * The Link UI stand-in, run in the iframe that link-initialize.js opens:
 * consent, institution search, credentials (Plaid sandbox's user_good /
 * pass_good, and password error_<ERROR_CODE> for its documented errors),
 * account selection, success. It talks to the emulator (same origin) to
 * check credentials and complete the link token, and to the page that opened
 * it only through postMessage, with Plaid's event names and callback
 * metadata shapes.
 */
(function () {
  'use strict';
  var B = window.PLAIDSIM_BOOT;
  var view = document.getElementById('view');
  var backBtn = document.querySelector('[data-testid=link-back]');
  var closeBtn = document.querySelector('[data-testid=link-close]');
  document.getElementById('session').textContent = 'session ' + B.link_session_id.slice(0, 8);

  var st = {
    view: null,
    institution: B.institution, // fixed in update mode
    query: '',
    username: '',
    password: '',
    accounts: [],
    selected: {},
    error: null, // the last Plaid error shown
    publicToken: null,
    prev: null,
  };

  function rid() {
    var a = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789', s = '';
    for (var i = 0; i < 15; i++) s += a.charAt(Math.floor(Math.random() * a.length));
    return s;
  }
  function post(msg) {
    msg.plaidsim = B.id;
    window.parent.postMessage(msg, B.parent_origin);
  }
  function instMeta() {
    return st.institution ? { name: st.institution.name, institution_id: st.institution.institution_id } : null;
  }
  // emit sends onEvent(eventName, metadata) with Plaid's metadata fields.
  function emit(name, extra) {
    var m = {
      account_number_mask: null, error_type: null, error_code: null, error_message: null,
      exit_status: null, institution_id: st.institution ? st.institution.institution_id : null,
      institution_name: st.institution ? st.institution.name : null, institution_search_query: null,
      is_update_mode: B.update_mode ? 'yes' : 'no', match_reason: null, mfa_type: null,
      routing_number: null, selection: null, view_name: null, timestamp: new Date().toISOString(),
      link_session_id: B.link_session_id, request_id: rid(),
    };
    for (var k in extra || {}) m[k] = extra[k];
    post({ action: 'event', eventName: name, metadata: m });
  }
  function el(tag, attrs, kids) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) {
      if (k === 'text') e.textContent = attrs[k];
      else if (k === 'on') e.addEventListener('click', attrs[k]);
      else if (k === 'disabled' || k === 'checked' || k === 'hidden') e[k] = !!attrs[k];
      else e.setAttribute(k, attrs[k]);
    }
    (kids || []).forEach(function (c) { if (c) e.appendChild(c); });
    return e;
  }
  function logo(name) {
    var colors = ['#1b6ac9', '#0a8f4e', '#b3261e', '#7b3fb5', '#c46a00', '#00707a'];
    var h = 0;
    for (var i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
    return el('span', { class: 'logo', style: 'background:' + colors[h % colors.length], text: name.charAt(0) });
  }
  function primary(label, onClick, disabled) {
    return el('button', { type: 'button', class: 'primary', 'data-testid': 'link-continue', text: label, on: onClick, disabled: disabled });
  }

  var EXIT_STATUS = {
    CONSENT: null, SELECT_INSTITUTION: 'institution_not_found', CREDENTIAL: 'requires_credentials',
    LOADING: 'requires_credentials', SELECT_ACCOUNT: 'requires_account_selection', ERROR: 'requires_credentials',
  };

  function go(name) {
    if (st.view && st.view !== 'EXIT') st.prev = st.view;
    st.view = name;
    emit('TRANSITION_VIEW', { view_name: name });
    render();
  }

  function render() {
    view.textContent = '';
    backBtn.hidden = !(st.view === 'CREDENTIAL' && !B.update_mode) && st.view !== 'EXIT';
    var r = renderers[st.view];
    if (r) r();
  }

  var renderers = {
    CONSENT: function () {
      view.appendChild(el('h1', { text: B.client_name + ' uses Plaid to connect your account' }));
      view.appendChild(el('p', { text: B.update_mode
        ? 'Your connection to ' + (st.institution ? st.institution.name : 'your bank') + ' needs attention. Log in again to keep it working.'
        : 'Connect effortlessly: Plaid lets you securely connect your financial accounts in seconds.' }));
      view.appendChild(el('p', { class: 'muted', text: 'Your data belongs to you. This is the local Plaid sandbox emulator: nothing leaves this machine.' }));
      view.appendChild(el('div', { class: 'grow' }));
      view.appendChild(primary('Continue', function () { go(B.update_mode ? 'CREDENTIAL' : 'SELECT_INSTITUTION'); }));
    },
    SELECT_INSTITUTION: function () {
      view.appendChild(el('h1', { text: 'Select your bank' }));
      var input = el('input', { type: 'search', placeholder: 'Search', 'data-testid': 'link-search', 'aria-label': 'Search institutions' });
      input.value = st.query;
      var list = el('ul', { class: 'list', 'data-testid': 'link-institutions' });
      var timer = null;
      function fill() {
        list.textContent = '';
        var q = st.query.trim().toLowerCase();
        var found = B.institutions.filter(function (i) { return !q || i.name.toLowerCase().indexOf(q) >= 0 || i.institution_id === q; });
        found.forEach(function (i) {
          list.appendChild(el('li', {}, [el('button', {
            type: 'button', 'data-testid': 'link-institution', 'data-institution-id': i.institution_id,
            on: function () {
              st.institution = i;
              emit('SELECT_INSTITUTION', { institution_id: i.institution_id, institution_name: i.name });
              go('CREDENTIAL');
            },
          }, [logo(i.name), el('span', { text: i.name })])]));
        });
        if (!found.length) list.appendChild(el('li', { class: 'muted', text: 'No results. Try "Platypus".' }));
      }
      input.addEventListener('input', function () {
        st.query = input.value;
        fill();
        clearTimeout(timer);
        timer = setTimeout(function () { emit('SEARCH_INSTITUTION', { institution_search_query: st.query }); }, 300);
      });
      view.appendChild(input);
      view.appendChild(list);
      fill();
      input.focus();
    },
    CREDENTIAL: function () {
      var inst = st.institution;
      view.appendChild(el('div', {}, [logo(inst.name)]));
      view.appendChild(el('h1', { text: 'Log in to ' + inst.name }));
      view.appendChild(el('div', { class: 'hint', text: 'Sandbox: username user_good, password pass_good (or error_ITEM_LOCKED, error_INVALID_CREDENTIALS, … to test errors).' }));
      if (st.error && st.error.error_code === 'INVALID_CREDENTIALS') {
        view.appendChild(el('div', { class: 'error', 'data-testid': 'link-error', text: st.error.display_message || st.error.error_message }));
      }
      var user = el('input', { type: 'text', id: 'u', autocomplete: 'off', 'data-testid': 'link-username' });
      var pass = el('input', { type: 'password', id: 'p', autocomplete: 'off', 'data-testid': 'link-password' });
      user.value = st.username;
      var btn = primary('Submit', submit);
      function submit() {
        st.username = user.value;
        st.password = pass.value;
        emit('SUBMIT_CREDENTIALS');
        go('LOADING');
        call('credentials', { link_token: B.token, institution_id: inst.institution_id, username: st.username, password: st.password })
          .then(function (r) {
            st.error = null;
            st.accounts = r.accounts;
            st.selected = {};
            st.accounts.forEach(function (a, i) { st.selected[a.id] = i === 0; });
            go('SELECT_ACCOUNT');
          }, fail);
      }
      [user, pass].forEach(function (i) { i.addEventListener('keydown', function (e) { if (e.key === 'Enter') submit(); }); });
      view.appendChild(el('label', { for: 'u', text: 'Username' }));
      view.appendChild(user);
      view.appendChild(el('label', { for: 'p', text: 'Password' }));
      view.appendChild(pass);
      view.appendChild(el('div', { class: 'grow' }));
      view.appendChild(btn);
      user.focus();
    },
    LOADING: function () {
      view.appendChild(el('div', { class: 'spinner' }));
      view.appendChild(el('p', { class: 'muted', style: 'text-align:center', text: 'Connecting to ' + st.institution.name + '…' }));
    },
    SELECT_ACCOUNT: function () {
      view.appendChild(el('h1', { text: 'Select the accounts to share with ' + B.client_name }));
      var box = el('div', { 'data-testid': 'link-accounts' });
      var btn = primary('Continue', function () {
        var ids = st.accounts.filter(function (a) { return st.selected[a.id]; }).map(function (a) { return a.id; });
        emit('SELECT_ACCOUNT', { selection: ids.join(',') });
        go('LOADING');
        call('complete', { link_token: B.token, institution_id: st.institution.institution_id, username: st.username, password: st.password, account_ids: ids })
          .then(function (r) { st.publicToken = r.public_token; go('CONNECTED'); }, fail);
      });
      function sync() { btn.disabled = !st.accounts.some(function (a) { return st.selected[a.id]; }); }
      st.accounts.forEach(function (a) {
        var cb = el('input', { type: 'checkbox', 'data-testid': 'link-account', 'data-account-id': a.id, checked: st.selected[a.id] });
        cb.addEventListener('change', function () { st.selected[a.id] = cb.checked; sync(); });
        box.appendChild(el('label', { class: 'account' }, [cb, el('span', { text: a.name + ' ••••' + a.mask + ' · ' + a.subtype })]));
      });
      view.appendChild(box);
      view.appendChild(el('div', { class: 'grow' }));
      view.appendChild(btn);
      sync();
    },
    CONNECTED: function () {
      view.appendChild(el('div', { class: 'check', text: '✓' }));
      view.appendChild(el('h1', { style: 'text-align:center', text: 'Success' }));
      view.appendChild(el('p', { style: 'text-align:center', text: 'Your account has been connected to ' + B.client_name + '.' }));
      view.appendChild(el('div', { class: 'grow' }));
      view.appendChild(primary('Continue', handoff));
    },
    ERROR: function () {
      var e = st.error;
      view.appendChild(el('h1', { text: 'Something went wrong' }));
      view.appendChild(el('div', { class: 'error', 'data-testid': 'link-error', 'data-error-code': e.error_code, text: e.display_message || e.error_message }));
      view.appendChild(el('p', { class: 'muted', text: e.error_type + ' · ' + e.error_code }));
      view.appendChild(el('div', { class: 'grow' }));
      if (e.error_code !== 'INVALID_LINK_TOKEN') {
        view.appendChild(el('button', { type: 'button', class: 'secondary', 'data-testid': 'link-retry', text: 'Try again', on: function () { go('CREDENTIAL'); } }));
      }
      view.appendChild(el('button', { type: 'button', class: 'primary', 'data-testid': 'link-exit', text: 'Exit', on: function () { exit(); } }));
    },
    EXIT: function () {
      view.appendChild(el('h1', { text: 'Are you sure you want to exit?' }));
      view.appendChild(el('p', { text: 'Your progress will be lost.' }));
      view.appendChild(el('div', { class: 'grow' }));
      view.appendChild(el('button', { type: 'button', class: 'secondary', text: 'Resume', on: function () { back(); } }));
      view.appendChild(el('button', { type: 'button', class: 'primary', 'data-testid': 'link-exit', text: 'Exit', on: function () { exit(); } }));
    },
  };

  function call(step, body) {
    return fetch('/__emu/link/ui/' + step, {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
    }).then(function (res) {
      return res.json().then(function (j) {
        if (!res.ok) throw j.error || { error_type: 'API_ERROR', error_code: 'INTERNAL_SERVER_ERROR', error_message: 'an unexpected error occurred', display_message: null };
        return j;
      });
    });
  }

  // fail shows a Plaid error the way Link does: INVALID_CREDENTIALS back on
  // the credential pane, anything else on an error pane.
  function fail(e) {
    st.error = e;
    emit('ERROR', { error_type: e.error_type, error_code: e.error_code, error_message: e.error_message });
    go(e.error_code === 'INVALID_CREDENTIALS' ? 'CREDENTIAL' : 'ERROR');
  }

  function accountsMeta() {
    return st.accounts.filter(function (a) { return st.selected[a.id]; }).map(function (a) {
      return { id: a.id, name: a.name, mask: a.mask, type: a.type, subtype: a.subtype, verification_status: null, class_type: null };
    });
  }

  function handoff() {
    emit('HANDOFF');
    var accounts = accountsMeta();
    post({
      action: 'success', publicToken: st.publicToken,
      metadata: {
        institution: instMeta(), accounts: accounts, account: accounts[0] || null,
        account_id: accounts.length ? accounts[0].id : null, link_session_id: B.link_session_id,
        public_token: st.publicToken, transfer_status: null, wallet: null,
      },
    });
    reset();
  }

  function exit() {
    var from = st.view === 'EXIT' ? st.prev : st.view;
    var status = EXIT_STATUS[from] === undefined ? null : EXIT_STATUS[from];
    var err = st.error;
    emit('EXIT', { exit_status: status, error_type: err ? err.error_type : null, error_code: err ? err.error_code : null, error_message: err ? err.error_message : null });
    post({
      action: 'exit', error: err || null,
      metadata: { institution: instMeta(), status: status, link_session_id: B.link_session_id, request_id: rid() },
    });
    reset();
  }

  function back() {
    if (st.view === 'EXIT') { st.view = st.prev; render(); return; }
    if (st.view === 'CREDENTIAL') go('SELECT_INSTITUTION');
  }

  function reset() {
    st.view = null;
    st.error = B.error;
    st.username = st.password = '';
    st.publicToken = null;
    if (!B.update_mode) st.institution = null;
    view.textContent = '';
  }

  function start() {
    emit('OPEN', { view_name: null });
    if (B.error) {
      st.error = B.error;
      emit('ERROR', { error_type: B.error.error_type, error_code: B.error.error_code, error_message: B.error.error_message });
      go('ERROR');
      return;
    }
    go('CONSENT');
  }

  backBtn.addEventListener('click', back);
  closeBtn.addEventListener('click', function () {
    if (st.view === 'CONNECTED') handoff();
    else exit();
  });

  window.addEventListener('message', function (e) {
    if (e.origin !== B.parent_origin || e.source !== window.parent) return;
    var m = e.data || {};
    if (m.plaidsim !== B.id) return;
    if (m.action === 'open') {
      start();
    } else if (m.action === 'exit') {
      // Plaid: exit({force: true}) closes at once; otherwise Link may ask
      // first; exiting after the connection hands off instead.
      if (st.view === 'CONNECTED') handoff();
      else if (m.force || st.view === 'CONSENT' || st.view === 'ERROR' || st.view === null) exit();
      else go('EXIT');
    }
    // submit(data) (Layer phone number and date of birth) has no step here.
  });

  st.error = B.error;
  post({ action: 'loaded' });
})();
