'use strict';
'require view';
'require dom';
'require poll';
'require rpc';
'require mpbridge.format as fmt';

// Services > mpbridge > Status: the daemon's links, its fastest
// connections with their subflows, and its counters, asked from
// `luci.mpbridge status` every 2 s. The text comes from mpbridge/format.js.

const callStatus = rpc.declare({
	object: 'luci.mpbridge',
	method: 'status',
	params: [ 'limit' ],
	expect: { '': {} }
});

const callCheck = rpc.declare({
	object: 'luci.mpbridge',
	method: 'check',
	expect: { '': {} }
});

// The connections shown: the 10 fastest, as `mpbridge status` does.
const TOP = 10;

const STATE_COLOURS = { ok: '#2e7d32', warn: '#b26a00', bad: '#c62828', unknown: 'inherit' };

function table(headers, rows) {
	return E('table', { 'class': 'table' }, [
		E('tr', { 'class': 'tr table-titles' }, headers.map((h) => E('th', { 'class': 'th' }, _(h)))),
		...rows
	]);
}

return view.extend({
	load() {
		return Promise.all([ callStatus(TOP), callCheck() ]);
	},

	renderLinks(status) {
		const rows = fmt.linkRows(status).map((r) => E('tr', { 'class': 'tr' }, r.cells.map((c, i) =>
			E('td', {
				'class': 'td',
				'style': i == 2 ? 'font-weight:bold;color:' + STATE_COLOURS[r.cls] : null
			}, c))));
		if (!rows.length)
			rows.push(E('tr', { 'class': 'tr placeholder' },
				E('td', { 'class': 'td' }, E('em', _('This daemon manages no links.')))));
		return table(fmt.linkHeaders, rows);
	},

	renderConnections(status) {
		const rows = fmt.connectionRows(status).map((r) => E('tr', {
			'class': 'tr',
			'style': r.kind == 'subflow' ? 'font-size:90%;opacity:0.8' : null
		}, r.cells.map((c) => E('td', { 'class': 'td' }, c))));
		if (!rows.length)
			rows.push(E('tr', { 'class': 'tr placeholder' },
				E('td', { 'class': 'td' }, E('em', _('No connections are being bridged.')))));
		const more = fmt.omitted(status);
		return E('div', {}, [ table(fmt.connectionHeaders, rows), more ? E('p', {}, E('em', more)) : '' ]);
	},

	renderCounters(status) {
		return E('table', { 'class': 'table' }, fmt.counterRows(status).map(([ label, text ]) =>
			E('tr', { 'class': 'tr' }, [
				E('td', { 'class': 'td left', 'width': '25%' }, _(label)),
				E('td', { 'class': 'td left' }, text)
			])));
	},

	renderAll(reply, check) {
		const problem = fmt.checkMessage(check);
		const parts = [
			problem ? E('div', { 'class': 'alert-message warning' }, [
				E('strong', _('/etc/config/mpbridge has a mistake:')), ' ', problem
			]) : '',
			E('p', {}, fmt.headline(reply))
		];
		if (reply?.running && reply.status) {
			parts.push(
				E('h3', _('Links')), this.renderLinks(reply.status),
				E('h3', _('Connections')), this.renderConnections(reply.status),
				E('h3', _('Counters')), this.renderCounters(reply.status));
			if (reply.status.subflows_unavailable)
				parts.push(E('p', {}, E('em', _('Subflows cannot be read here: %s').format(reply.status.subflows_unavailable))));
		}
		return parts;
	},

	render([ reply, check ]) {
		const body = E('div', { 'id': 'mpbridge-status' }, this.renderAll(reply, check));
		poll.add(() => callStatus(TOP).then((r) => dom.content(body, this.renderAll(r, check))), 2);
		return E('div', {}, [
			E('h2', _('mpbridge')),
			E('div', { 'class': 'cbi-map-descr' },
				_('Every TCP connection between the two routers, carried over all their links at once.')),
			body
		]);
	},

	handleSave: null,
	handleSaveApply: null,
	handleReset: null
});
