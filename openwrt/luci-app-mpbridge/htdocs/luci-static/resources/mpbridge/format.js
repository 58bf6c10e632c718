'use strict';
'require baseclass';

// The status page's and config form's pure logic: numbers and states as
// text, and the rows of the page's tables from the object `luci.mpbridge
// status` returns (the daemon's status object, docs/CONTROL.md). No DOM
// and no LuCI calls here, so that node loads this file as LuCI does (a
// function of `baseclass` returning a class) and tests it
// (openwrt/luci-app-mpbridge/tests/format.test.js).

const DASH = '\u2013';

function fixed(v, digits) {
	return Number(v).toFixed(digits);
}

return baseclass.extend({
	// Bits per second, decimal prefixes as network rates are told:
	// "0 bit/s", "750.5 kbit/s", "43.8 Mbit/s".
	rate(bits) {
		if (bits == null || isNaN(bits))
			return DASH;
		const units = [ 'bit/s', 'kbit/s', 'Mbit/s', 'Gbit/s', 'Tbit/s' ];
		let v = Number(bits), i = 0;
		while (v >= 1000 && i < units.length - 1) {
			v /= 1000;
			i++;
		}
		return (i == 0 ? String(Math.round(v)) : fixed(v, 1)) + ' ' + units[i];
	},

	// Bytes, binary prefixes: "0 B", "72 B", "27.4 MiB".
	bytes(n) {
		if (n == null || isNaN(n))
			return DASH;
		const units = [ 'B', 'KiB', 'MiB', 'GiB', 'TiB' ];
		let v = Number(n), i = 0;
		while (v >= 1024 && i < units.length - 1) {
			v /= 1024;
			i++;
		}
		return (i == 0 ? String(Math.round(v)) : fixed(v, 1)) + ' ' + units[i];
	},

	// Seconds as the two largest units: "5s", "3m 07s", "2h 05m", "4d 03h".
	duration(secs) {
		if (secs == null || isNaN(secs) || secs < 0)
			return DASH;
		const s = Math.floor(secs);
		const pad = (n) => String(n).padStart(2, '0');
		if (s < 60)
			return s + 's';
		if (s < 3600)
			return Math.floor(s / 60) + 'm ' + pad(s % 60) + 's';
		if (s < 86400)
			return Math.floor(s / 3600) + 'h ' + pad(Math.floor(s / 60) % 60) + 'm';
		return Math.floor(s / 86400) + 'd ' + pad(Math.floor(s / 3600) % 24) + 'h';
	},

	// Milliseconds: "0.4 ms" below 10, "15 ms" above; null (no probes
	// yet, or router B) as a dash.
	rtt(ms) {
		if (ms == null || isNaN(ms))
			return DASH;
		return (ms < 10 ? fixed(ms, 1) : String(Math.round(ms))) + ' ms';
	},

	loss(percent) {
		if (percent == null || isNaN(percent))
			return DASH;
		return fixed(percent, 1) + ' %';
	},

	// A link's state as a word and a colour class the view styles:
	// up (green), backup (amber: carrying traffic as configured backup),
	// down (red).
	linkState(link) {
		const state = link?.state ?? 'unknown';
		const cls = { up: 'ok', backup: 'warn', down: 'bad' }[state] ?? 'unknown';
		return { text: state, cls };
	},

	// How a connection crosses: "mptcp, 2 subflows", "mptcp, fell back
	// to TCP", "tcp".
	path(conn) {
		if (conn.transport == 'tcp')
			return 'tcp';
		if (conn.fallback === true)
			return 'mptcp, fell back to TCP';
		if (!Array.isArray(conn.subflows))
			return 'mptcp';
		const n = conn.subflows.length;
		return 'mptcp, ' + n + (n == 1 ? ' subflow' : ' subflows');
	},

	linkHeaders: [ 'Link', 'Addresses', 'State', 'Since', 'Probe', 'RTT', 'Loss', 'TX', 'RX', 'Subflows' ],

	// One row of cells per link: { cells, cls } (cls colours the state).
	linkRows(status) {
		return (status?.links ?? []).map((l) => {
			const st = this.linkState(l);
			return {
				cls: st.cls,
				cells: [
					l.interface,
					(l.addresses ?? []).join(' ') || DASH,
					st.text,
					this.duration(l.state_secs),
					l.probe ?? DASH,
					this.rtt(l.rtt_ms),
					this.loss(l.loss_percent),
					this.rate(l.tx_bits_per_sec),
					this.rate(l.rx_bits_per_sec),
					String(l.subflows ?? 0)
				]
			};
		});
	},

	connectionHeaders: [ 'Connection', 'Age', 'Up', 'Down', 'Up/s', 'Down/s', 'Path' ],

	// A row per connection, each followed by a row per subflow (kind
	// 'subflow': the local and remote address, the bytes this side sent
	// and received, and the link, state and RTT).
	connectionRows(status) {
		const rows = [];
		for (const c of status?.connections ?? []) {
			rows.push({
				kind: 'connection',
				cells: [
					c.client + ' \u2192 ' + c.destination,
					this.duration(c.age_secs),
					this.bytes(c.bytes_up),
					this.bytes(c.bytes_down),
					this.rate(c.up_bits_per_sec),
					this.rate(c.down_bits_per_sec),
					this.path(c)
				]
			});
			for (const f of c.subflows ?? []) {
				rows.push({
					kind: 'subflow',
					cells: [
						'\u21b3 ' + f.local + ' \u2192 ' + f.remote,
						'',
						this.bytes(f.bytes_sent),
						this.bytes(f.bytes_received),
						'',
						'',
						[ f.link ?? '?', f.state ?? '', this.rtt(f.rtt_ms) ].join(' ')
					]
				});
			}
		}
		return rows;
	},

	// "and N more" under the connections table, or null.
	omitted(status) {
		const n = status?.connections_omitted ?? 0;
		return n > 0 ? 'and ' + n + ' more' : null;
	},

	// The counters as [label, text] pairs, as `mpbridge status` prints them.
	counterRows(status) {
		const t = status?.totals;
		if (!t)
			return [];
		const r = t.refused ?? {}, e = t.errors ?? {};
		return [
			[ 'Connections', t.connections_open + ' open, ' + t.connections_total + ' since start' ],
			[ 'Bytes', 'up ' + this.bytes(t.bytes_up) + ', down ' + this.bytes(t.bytes_down) ],
			[ 'Refused', 'auth ' + (r.auth ?? 0) + ', policy ' + (r.policy ?? 0) + ', limit ' +
				(r.limit ?? 0) + ', malformed ' + (r.malformed ?? 0) ],
			[ 'Errors', 'dial ' + (e.dial ?? 0) + ', remote refused ' + (e.remote_refused ?? 0) +
				', bad reply ' + (e.bad_reply ?? 0) + ', reset ' + (e.reset ?? 0) ]
		];
	},

	// The page's first line: "mpbridge local, pid 28981, up 5s, version
	// 0.1.0", or why there is no status.
	headline(reply) {
		if (!reply || !reply.running || !reply.status)
			return 'mpbridge is not running' + (reply?.error ? ': ' + reply.error : '');
		const s = reply.status;
		return 'mpbridge ' + s.mode + ', pid ' + s.pid + ', up ' + this.duration(s.uptime_secs) +
			', version ' + s.daemon_version;
	},

	// `luci.mpbridge check`'s verdict as one line, or null when valid.
	checkMessage(result) {
		if (!result || result.valid)
			return null;
		let where = [];
		if (result.section)
			where.push('section ' + result.section);
		if (result.option)
			where.push('option ' + result.option);
		if (result.line)
			where.push('line ' + result.line);
		return (where.length ? where.join(', ') + ': ' : '') + (result.problem ?? result.message ?? 'invalid');
	},

	// The form's checks, mirroring `mpbridge uci`'s (which stays the
	// authority): an error text, or null when fine.
	keyError(value) {
		if (value == null || value === '')
			return null;
		return /^[0-9a-fA-F]{64}$/.test(value) ? null : 'expected 64 hexadecimal digits (mpbridge genkey)';
	},

	linkChoiceError(network, device) {
		const has = (v) => v != null && v !== '' && !(Array.isArray(v) && v.length == 0);
		if (has(network) && has(device))
			return 'set either a network or a device, not both';
		if (!has(network) && !has(device))
			return 'choose the network (e.g. wwan) or the device of this link';
		return null;
	}
});
