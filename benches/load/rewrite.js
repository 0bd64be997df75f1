// nginx + njs baseline for benches/load.sh: the same rewrite as the scrim
// "realistic" rule set (benches/load/realistic.toml), done in JavaScript.
//
// Written for njs 0.7.9, the version Debian bookworm ships as
// libnginx-mod-http-js (no js_body_filter on requests, no
// r.readRequestText; crypto.createHmac and r.subrequest are there).
//
// Choice: `js_content` + `r.subrequest` to an internal location that
// proxy_passes to the upstream (keepalive pool). Chosen over
// `js_set` + `proxy_set_body` because only a content handler can refuse a
// request (400 on invalid JSON, nothing forwarded), as scrim does; a js_set
// variable cannot change the status, so a parse error would forward an empty
// or unmodified body. ngx.fetch is not used: it opens a new connection per
// request (no upstream keepalive) and resolves names itself.
//
// Per event (the body itself, or each element of body.batch):
//   userId, anonymousId      -> "k." + base64url(HMAC-SHA256(key, value))[0..22]
//   traits.email             -> same, after trim + lower-case
//   context.ip               -> IPv4 /24, IPv6 /48 (anything else is dropped)
//   context.userAgent, traits.phone, traits.address -> deleted
//   everything else          -> kept (JSON.parse/JSON.stringify: numbers go
//                               through doubles, \u escapes are re-encoded,
//                               duplicate keys are not detected -- scrim is
//                               stricter on all three; see the results notes)

const crypto = require('crypto');

function pseudonym(key, value) {
    return 'k.' + crypto.createHmac('sha256', key).update(String(value))
        .digest('base64url').slice(0, 22);
}

function truncateIp(ip) {
    if (typeof ip !== 'string') {
        return undefined;
    }
    const v4 = ip.split('.');
    if (v4.length === 4 && v4.every(p => /^\d{1,3}$/.test(p) && +p < 256)) {
        return v4[0] + '.' + v4[1] + '.' + v4[2] + '.0';
    }
    // Full-form IPv6 (no "::" within the first three groups): keep /48.
    const v6 = ip.split(':');
    if (v6.length >= 4 && v6.length <= 8 && ip.indexOf('::') === -1
        && v6.every(p => /^[0-9a-fA-F]{1,4}$/.test(p))) {
        return v6[0] + ':' + v6[1] + ':' + v6[2] + '::';
    }
    return undefined;
}

function rewriteEvent(key, ev) {
    if (ev === null || typeof ev !== 'object') {
        return;
    }
    if (ev.userId !== undefined) {
        ev.userId = pseudonym(key, ev.userId);
    }
    if (ev.anonymousId !== undefined) {
        ev.anonymousId = pseudonym(key, ev.anonymousId);
    }
    const c = ev.context;
    if (c && typeof c === 'object') {
        if (c.ip !== undefined) {
            const t = truncateIp(c.ip);
            if (t === undefined) {
                delete c.ip;
            } else {
                c.ip = t;
            }
        }
        delete c.userAgent;
    }
    const t = ev.traits;
    if (t && typeof t === 'object') {
        if (typeof t.email === 'string') {
            t.email = pseudonym(key, t.email.trim().toLowerCase());
        } else {
            delete t.email;
        }
        delete t.phone;
        delete t.address;
    }
}

function handle(r) {
    let doc;
    try {
        doc = JSON.parse(r.requestText);
    } catch (e) {
        r.headersOut['Content-Type'] = 'application/json';
        r.return(400, '{"error":{"code":"invalid_json"}}');
        return;
    }
    const key = r.variables.bench_key;
    if (doc && Array.isArray(doc.batch)) {
        doc.batch.forEach(ev => rewriteEvent(key, ev));
    } else {
        rewriteEvent(key, doc);
    }
    r.subrequest('/_up' + r.uri, {method: 'POST', body: JSON.stringify(doc)})
        .then(reply => r.return(reply.status, reply.responseText))
        .catch(() => r.return(502));
}

export default {handle};
