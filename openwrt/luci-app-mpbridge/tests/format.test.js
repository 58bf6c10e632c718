// The status page's text and tables from a status object (node --test).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { load } = require('./luci-loader.js');

const fmt = load('mpbridge/format.js');
const reply = require('./status-local.json');

test('rates use decimal prefixes, bytes binary ones', () => {
	assert.equal(fmt.rate(0), '0 bit/s');
	assert.equal(fmt.rate(999), '999 bit/s');
	assert.equal(fmt.rate(750500), '750.5 kbit/s');
	assert.equal(fmt.rate(43800000), '43.8 Mbit/s');
	assert.equal(fmt.rate(2.5e9), '2.5 Gbit/s');
	assert.equal(fmt.rate(null), '\u2013');
	assert.equal(fmt.bytes(72), '72 B');
	assert.equal(fmt.bytes(1024), '1.0 KiB');
	assert.equal(fmt.bytes(28730982), '27.4 MiB');
	assert.equal(fmt.bytes(undefined), '\u2013');
});

test('durations show their two largest units', () => {
	assert.equal(fmt.duration(0), '0s');
	assert.equal(fmt.duration(59.9), '59s');
	assert.equal(fmt.duration(187), '3m 07s');
	assert.equal(fmt.duration(3725), '1h 02m');
	assert.equal(fmt.duration(90061), '1d 01h');
	assert.equal(fmt.duration(-1), '\u2013');
});

test('RTT and loss, with a dash where there are no probes', () => {
	assert.equal(fmt.rtt(0.42), '0.4 ms');
	assert.equal(fmt.rtt(15.2), '15 ms');
	assert.equal(fmt.rtt(null), '\u2013');
	assert.equal(fmt.loss(4), '4.0 %');
	assert.equal(fmt.loss(null), '\u2013');
});

test('a row per link with its state, RTT, loss, rates and subflows', () => {
	const rows = fmt.linkRows(reply.status);
	assert.equal(rows.length, 3);
	assert.equal(rows[0].cells.length, fmt.linkHeaders.length);
	assert.deepEqual(rows[0].cells, [ 'wan0', '10.20.0.1 fd00:20::1', 'up', '5s', 'up', '15 ms', '4.0 %',
		'750.5 kbit/s', '43.8 Mbit/s', '1' ]);
	assert.deepEqual(rows.map((r) => r.cls), [ 'ok', 'warn', 'bad' ]);
	assert.deepEqual(rows[2].cells.slice(1, 7), [ '\u2013', 'down', '1d 01h', 'off', '\u2013', '\u2013' ]);
	assert.deepEqual(fmt.linkRows({ links: [] }), []);
	assert.deepEqual(fmt.linkRows(undefined), []);
});

test('connections are followed by their subflows', () => {
	const rows = fmt.connectionRows(reply.status);
	assert.deepEqual(rows.map((r) => r.kind), [ 'connection', 'subflow', 'subflow', 'connection' ]);
	assert.deepEqual(rows[0].cells, [ '10.10.0.2:48074 \u2192 10.30.0.2:44261', '4s', '0 B', '54.7 MiB',
		'0 bit/s', '89.3 Mbit/s', 'mptcp, 2 subflows' ]);
	assert.equal(rows[1].cells[0], '\u21b3 10.20.0.1:58096 \u2192 10.20.0.2:4443');
	assert.deepEqual(rows[1].cells.slice(2, 4), [ '72 B', '27.4 MiB' ]);
	assert.equal(rows[1].cells[6], 'wan0 established 0.1 ms');
	// Plain TCP (local.mptcp = false): no subflows, said so.
	assert.equal(rows[3].cells[6], 'tcp');
	for (const r of rows)
		assert.equal(r.cells.length, fmt.connectionHeaders.length);
	assert.equal(fmt.omitted(reply.status), 'and 3 more');
	assert.equal(fmt.omitted({ connections_omitted: 0 }), null);
});

test('the path says when MPTCP fell back or subflows cannot be read', () => {
	assert.equal(fmt.path({ transport: 'mptcp', fallback: true, subflows: [] }), 'mptcp, fell back to TCP');
	assert.equal(fmt.path({ transport: 'mptcp', fallback: null, subflows: null }), 'mptcp');
	assert.equal(fmt.path({ transport: 'mptcp', fallback: false, subflows: [ {} ] }), 'mptcp, 1 subflow');
});

test('counters as mpbridge status prints them', () => {
	assert.deepEqual(fmt.counterRows(reply.status), [
		[ 'Connections', '1 open, 7 since start' ],
		[ 'Bytes', 'up 0 B, down 54.7 MiB' ],
		[ 'Refused', 'auth 0, policy 2, limit 0, malformed 1' ],
		[ 'Errors', 'dial 3, remote refused 0, bad reply 0, reset 4' ]
	]);
	assert.deepEqual(fmt.counterRows({}), []);
});

test('the headline, or why there is no status', () => {
	assert.equal(fmt.headline(reply), 'mpbridge local, pid 28981, up 5s, version 0.1.0');
	assert.equal(fmt.headline({ running: false, error: '/var/run/mpbridge/local.sock: no such socket' }),
		'mpbridge is not running: /var/run/mpbridge/local.sock: no such socket');
	assert.equal(fmt.headline(null), 'mpbridge is not running');
});

test('check results name the section, option and line', () => {
	assert.equal(fmt.checkMessage({ valid: true, role: 'local' }), null);
	assert.equal(fmt.checkMessage({ valid: false, section: 'mpbridge.wifi1', option: 'network', line: 31,
		problem: 'netifd knows no network "wan9"' }),
	'section mpbridge.wifi1, option network, line 31: netifd knows no network "wan9"');
	assert.equal(fmt.checkMessage({ valid: false, problem: 'cannot read' }), 'cannot read');
});

test('the form checks the key and a link\'s network or device', () => {
	assert.equal(fmt.keyError(''), null);
	assert.equal(fmt.keyError('ab'.repeat(32)), null);
	assert.match(fmt.keyError('abc'), /64 hexadecimal/);
	assert.equal(fmt.linkChoiceError('wwan', ''), null);
	assert.equal(fmt.linkChoiceError(null, 'wlan1'), null);
	assert.match(fmt.linkChoiceError('wwan', 'wlan1'), /not both/);
	assert.match(fmt.linkChoiceError('', []), /network .* or the device/);
});
