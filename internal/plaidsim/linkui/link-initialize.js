/*
 * Safeclose's offline stand-in for Plaid's link-initialize.js
 * (https://cdn.plaid.com/link/v2/stable/link-initialize.js), served by the
 * local Plaid emulator (internal/plaidsim). It implements the documented
 * window.Plaid.create({token, onSuccess, onExit, onEvent, onLoad,
 * receivedRedirectUri}) handler with open, exit, submit and destroy, and
 * runs the Link UI in an iframe overlay served by the emulator, so that
 * react-plaid-link and other Link integrations run unmodified.
 * Emulator only: it never talks to Plaid.
 */
(function () {
  'use strict';
  if (window.Plaid && window.Plaid.__plaidsim) {
    return;
  }
  var EMULATOR = __EMULATOR_ORIGIN__; // the emulator's origin, written in by the server
  var FRAME_PATH = '/__emu/link/ui';
  var seq = 0;

  function noop() {}

  function create(config) {
    config = config || {};
    var onSuccess = typeof config.onSuccess === 'function' ? config.onSuccess : noop;
    var onExit = typeof config.onExit === 'function' ? config.onExit : noop;
    var onEvent = typeof config.onEvent === 'function' ? config.onEvent : noop;
    var onLoad = typeof config.onLoad === 'function' ? config.onLoad : noop;
    var id = 'plaid-link-iframe-' + ++seq;
    var loaded = false;
    var openWhenLoaded = false;
    var isOpen = false;
    var destroyed = false;

    var frame = document.createElement('iframe');
    frame.id = id;
    frame.name = id;
    frame.title = 'Plaid Link';
    frame.setAttribute('allow', 'camera; publickey-credentials-get');
    var q = '?token=' + encodeURIComponent(config.token || '') +
      '&origin=' + encodeURIComponent(window.location.origin) +
      '&id=' + encodeURIComponent(id);
    if (config.receivedRedirectUri) {
      q += '&received_redirect_uri=' + encodeURIComponent(config.receivedRedirectUri);
    }
    frame.src = EMULATOR + FRAME_PATH + q;
    frame.style.cssText = 'position:fixed;top:0;left:0;width:100%;height:100%;border:0;' +
      'z-index:2147483647;display:none;background:transparent;color-scheme:normal';

    function post(msg) {
      if (frame.contentWindow) {
        frame.contentWindow.postMessage(msg, EMULATOR);
      }
    }
    function hide() {
      isOpen = false;
      frame.style.display = 'none';
    }
    function show() {
      isOpen = true;
      frame.style.display = 'block';
      post({ plaidsim: id, action: 'open' });
    }

    function onMessage(e) {
      if (e.origin !== EMULATOR || e.source !== frame.contentWindow) {
        return;
      }
      var m = e.data || {};
      if (m.plaidsim !== id) {
        return;
      }
      switch (m.action) {
        case 'loaded':
          loaded = true;
          onLoad();
          if (openWhenLoaded) {
            openWhenLoaded = false;
            show();
          }
          break;
        case 'event':
          onEvent(m.eventName, m.metadata);
          break;
        case 'success':
          hide();
          onSuccess(m.publicToken, m.metadata);
          break;
        case 'exit':
          hide();
          onExit(m.error || null, m.metadata);
          break;
      }
    }
    window.addEventListener('message', onMessage);
    (document.body || document.documentElement).appendChild(frame);

    return {
      open: function () {
        if (destroyed) {
          return;
        }
        if (!loaded) {
          openWhenLoaded = true; // Plaid delays open() until Link has loaded
          return;
        }
        show();
      },
      exit: function (opts) {
        if (destroyed) {
          return;
        }
        openWhenLoaded = false;
        if (!isOpen) {
          return;
        }
        post({ plaidsim: id, action: 'exit', force: !!(opts && opts.force) });
      },
      submit: function (data) {
        if (!destroyed) {
          post({ plaidsim: id, action: 'submit', data: data || {} });
        }
      },
      destroy: function () {
        if (destroyed) {
          return;
        }
        destroyed = true;
        window.removeEventListener('message', onMessage);
        if (frame.parentNode) {
          frame.parentNode.removeChild(frame);
        }
      },
    };
  }

  window.Plaid = {
    __plaidsim: true,
    version: 'plaidsim',
    create: create,
    createEmbedded: function () {
      throw new Error('plaidsim: embedded Link is not emulated; use Plaid.create');
    },
  };
})();
