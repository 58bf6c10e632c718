// The two views loaded as LuCI loads them, with stand-ins for LuCI's
// modules (view, rpc, poll, dom, form, ui, tools.widgets) and its globals
// E() and _(): the status view's DOM built from a status object and
// refreshed every 2 s; the form's options all known to `mpbridge uci`.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { load, baseclass } = require('./luci-loader.js');

const fmt = load('mpbridge/format.js');
const reply = require('./status-local.json');

// LuCI's globals: E(tag, attrs, children) makes an element, _() translates.
globalThis.E = (tag, attrs, children) => {
	if (children === undefined && (typeof attrs == 'string' || Array.isArray(attrs) || attrs?.tag)) {
		children = attrs;
		attrs = {};
	}
	return { tag, attrs: attrs ?? {}, children: [].concat(children ?? []) };
};
globalThis._ = (s) => s;
String.prototype.format = function(...args) {
	let i = 0;
	return this.replace(/%s/g, () => String(args[i++]));
};

// All text under a node.
function text(node) {
	if (node == null || node === '')
		return '';
	if (typeof node == 'string' || typeof node == 'number')
		return String(node);
	if (Array.isArray(node))
		return node.map(text).join(' ');
	return text(node.children);
}

function find(node, pred, out = []) {
	if (node && typeof node == 'object') {
		if (!Array.isArray(node) && pred(node))
			out.push(node);
		for (const c of Array.isArray(node) ? node : node.children ?? [])
			find(c, pred, out);
	}
	return out;
}

function rpcStub(answers, calls) {
	return {
		declare(spec) {
			return (...args) => {
				calls.push([ spec.method, args ]);
				return Promise.resolve(answers[spec.method]);
			};
		}
	};
}

test('the status view shows links, connections with subflows and counters, every 2 s', async () => {
	const calls = [], polls = [];
	const check = { valid: false, section: 'mpbridge.main', option: 'port', line: 9, problem: '"https" is not a TCP port' };
	const view = load('view/mpbridge/status.js', {
		view: baseclass,
		rpc: rpcStub({ status: reply, check }, calls),
		poll: { add: (fn, interval) => polls.push([ fn, interval ]) },
		dom: { content: (node, children) => { node.children = [].concat(children); } },
		'mpbridge.format': fmt
	});
	const loaded = await view.load();
	assert.deepEqual(calls, [ [ 'status', [ 10 ] ], [ 'check', [] ] ]);
	const page = view.render(loaded);
	const all = text(page);
	assert.match(all, /mpbridge local, pid 28981, up 5s, version 0\.1\.0/);
	assert.match(all, /section mpbridge\.main, option port, line 9: "https" is not a TCP port/);
	const tables = find(page, (n) => n.tag == 'table');
	assert.equal(tables.length, 3, 'links, connections, counters');
	const linkRows = find(tables[0], (n) => n.tag == 'tr').slice(1);
	assert.deepEqual(linkRows.map((r) => text(r.children[0])), [ 'wan0', 'wan1', 'wwan' ]);
	assert.equal(linkRows[2].children[2].attrs.style, 'font-weight:bold;color:#c62828');
	const connRows = find(tables[1], (n) => n.tag == 'tr').slice(1);
	assert.equal(connRows.length, 4);
	assert.match(text(connRows[2]), /wan1 established 0\.0 ms/);
	assert.match(all, /and 3 more/);
	assert.match(text(tables[2]), /dial 3, remote refused 0, bad reply 0, reset 4/);

	// The refresh: every 2 s, the status asked again and the page redrawn.
	assert.equal(polls.length, 1);
	assert.equal(polls[0][1], 2);
	const stopped = { running: false, error: 'no such socket' };
	calls.length = 0;
	const v2 = load('view/mpbridge/status.js', {
		view: baseclass,
		rpc: rpcStub({ status: stopped, check: { valid: true } }, calls),
		poll: { add: (fn, interval) => polls.push([ fn, interval ]) },
		dom: { content: (node, children) => { node.children = [].concat(children); } },
		'mpbridge.format': fmt
	});
	const page2 = v2.render([ reply, { valid: true } ]);
	await polls[1][0]();
	assert.deepEqual(calls, [ [ 'status', [ 10 ] ] ]);
	assert.match(text(page2), /mpbridge is not running: no such socket/);
	assert.equal(find(page2, (n) => n.tag == 'table').length, 0);
});

// A recording stand-in for LuCI's form module.
function formStub() {
	const sections = [];
	class Opt {
		constructor(kind, name) {
			Object.assign(this, { kind, name, values: [], deps: [] });
		}
		value(v) { this.values.push(v); }
		depends(k, v) { this.deps.push([ k, v ]); }
	}
	const kinds = [ 'Flag', 'ListValue', 'Value', 'Button', 'DynamicList' ];
	const form = { sections };
	for (const k of kinds)
		form[k] = k;
	form.NamedSection = 'NamedSection';
	form.GridSection = 'GridSection';
	form.Map = class {
		constructor(config) { this.config = config; }
		// LuCI's order: (NamedSection, NAME, TYPE) but (TypedSection, TYPE).
		section(kind, a, b) {
			const [ name, type ] = kind == 'NamedSection' ? [ a, b ] : [ null, a ];
			const s = { kind, name, type, options: [], values: {} };
			s.option = (okind, oname) => {
				const o = new Opt(okind, oname);
				o.section = { formvalue: (sid, n) => s.values[n] };
				o.map = this;
				s.options.push(o);
				return o;
			};
			sections.push(s);
			return s;
		}
		render() { return Promise.resolve({ children: [], firstChild: null, insertBefore(n) { this.children.unshift(n); } }); }
	};
	return form;
}

// The options `mpbridge uci` knows (MAIN_OPTIONS, LINK_OPTIONS in uci.rs).
function uciOptions(table) {
	const src = fs.readFileSync(path.join(__dirname, '../../../crates/mpbridge/src/uci.rs'), 'utf8');
	const body = src.match(new RegExp('const ' + table + ': &\\[\\(&str, bool\\)\\] = &\\[([^\\]]*)\\]'))[1];
	return [ ...body.matchAll(/\("(\w+)"/g) ].map((m) => m[1]);
}

test('the form edits only options mpbridge uci knows, and checks a link\'s choice', async () => {
	const form = formStub();
	const view = load('view/mpbridge/config.js', {
		view: baseclass,
		form,
		rpc: rpcStub({ check: { valid: true } }, []),
		ui: {},
		'tools.widgets': { NetworkSelect: 'NetworkSelect', DeviceSelect: 'DeviceSelect' },
		'mpbridge.format': fmt
	});
	const node = await view.render(await view.load());
	assert.equal(node.children.length, 0, 'no warning for a valid config');
	const [ main, link ] = form.sections;
	assert.equal(main.type, 'mpbridge');
	assert.equal(link.type, 'link');
	const names = (s) => s.options.map((o) => o.name).filter((n) => !n.startsWith('_'));
	const known = uciOptions('MAIN_OPTIONS');
	for (const n of names(main))
		assert.ok(known.includes(n), n + ' is not an option of config mpbridge');
	for (const n of [ 'role', 'key', 'remote', 'bypass', 'intercept', 'log_level' ])
		assert.ok(names(main).includes(n), 'the form has no ' + n);
	assert.deepEqual(names(link).sort(), uciOptions('LINK_OPTIONS').sort());
	const network = link.options.find((o) => o.name == 'network');
	assert.equal(network.kind, 'NetworkSelect');
	link.values.device = 'wlan1';
	assert.match(network.validate('cfg1', 'wwan'), /not both/);
	link.values.device = '';
	assert.equal(network.validate('cfg1', 'wwan'), true);
	assert.match(network.validate('cfg1', ''), /network/);
	// Its default is what mpbridge uci assumes when the option is absent.
	assert.equal(main.options.find((o) => o.name == 'enabled').default, '1');
	const key = main.options.find((o) => o.name == 'key');
	assert.match(key.validate('main', 'zz'), /64 hexadecimal/);
	assert.equal(key.validate('main', 'ab'.repeat(32)), true);
});

test('the form shows the saved config\'s mistake', async () => {
	const form = formStub();
	const view = load('view/mpbridge/config.js', {
		view: baseclass,
		form,
		rpc: rpcStub({}, []),
		ui: {},
		'tools.widgets': { NetworkSelect: 'NetworkSelect', DeviceSelect: 'DeviceSelect' },
		'mpbridge.format': fmt
	});
	const node = await view.render({ valid: false, section: 'mpbridge.@link[0]', option: 'network', problem: 'netifd knows no network "wan9"' });
	assert.match(text(node.children[0]), /section mpbridge\.@link\[0\], option network: netifd knows no network "wan9"/);
});
