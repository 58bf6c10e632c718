'use strict';
'require view';
'require form';
'require rpc';
'require ui';
'require tools.widgets as widgets';
'require mpbridge.format as fmt';

// Services > mpbridge > Configuration: a form over /etc/config/mpbridge.
// Saving and applying runs the init script, which renders the file with
// `mpbridge uci`; its verdict (`luci.mpbridge check`) is shown on top.

const callCheck = rpc.declare({
	object: 'luci.mpbridge',
	method: 'check',
	expect: { '': {} }
});

const callGenkey = rpc.declare({
	object: 'luci.mpbridge',
	method: 'genkey',
	expect: { '': {} }
});

return view.extend({
	load() {
		return callCheck();
	},

	render(check) {
		let m, s, o;

		m = new form.Map('mpbridge', _('mpbridge'),
			_('Router A (local) bridges its LAN\'s TCP to router B (remote) over every link between them. ' +
			  'Both routers need the same key.'));

		s = m.section(form.NamedSection, 'main', 'mpbridge', _('Bridge'));

		// Absent means enabled to `mpbridge uci`; the package's file says 0.
		o = s.option(form.Flag, 'enabled', _('Enabled'));
		o.default = '1';
		o.rmempty = false;

		o = s.option(form.ListValue, 'role', _('Role'));
		o.value('local', _('local: router A, whose LAN\'s TCP is bridged'));
		o.value('remote', _('remote: router B, where connections leave for the Internet'));

		o = s.option(form.Value, 'key', _('Pre-shared key'),
			_('64 hexadecimal digits, the same on both routers. Leave empty to use the key file.'));
		o.password = true;
		o.validate = (section_id, value) => fmt.keyError(value) ?? true;

		o = s.option(form.Button, '_genkey', _('New key'));
		o.inputtitle = _('Generate');
		o.onclick = function(ev, section_id) {
			return callGenkey().then((r) => {
				if (!r.key)
					return ui.addNotification(null, E('p', r.error ?? _('No key was made')), 'danger');
				this.map.lookupOption('key', section_id)[0].getUIElement(section_id).setValue(r.key);
			});
		};

		o = s.option(form.Value, 'key_file', _('Key file'));
		o.placeholder = '/etc/mpbridge/key';
		o.depends('key', '');

		o = s.option(form.DynamicList, 'remote', _('Router B'), _('Router B\'s address on a link; more than one are tried in order.'));
		o.datatype = 'ipaddr';
		o.depends('role', 'local');

		o = s.option(form.Value, 'port', _('Router B\'s port'));
		o.datatype = 'port';
		o.placeholder = '4443';
		o.depends('role', 'local');

		o = s.option(form.Value, 'listen_port', _('Listen port'));
		o.datatype = 'port';
		o.placeholder = '4443';
		o.depends('role', 'remote');

		o = s.option(form.ListValue, 'intercept', _('Interception'));
		o.value('tproxy', _('tproxy (the original destination is kept)'));
		o.value('redirect', _('redirect'));
		o.default = 'tproxy';
		o.depends('role', 'local');

		o = s.option(widgets.DeviceSelect, 'lan_interface', _('LAN devices'), _('TCP arriving on these is bridged.'));
		o.multiple = true;
		o.noaliases = true;
		o.depends('role', 'local');

		o = s.option(form.DynamicList, 'bypass', _('Never bridged'), _('Destinations (CIDR) reached directly.'));
		o.datatype = 'cidr';
		o.depends('role', 'local');

		o = s.option(form.ListValue, 'quic', _('QUIC (UDP to port 443)'),
			_('Refused at once, so browsers fall back to TCP, which is bridged over every link; passed, it rides one link per flow.'));
		o.value('refuse', _('refuse'));
		o.value('pass', _('pass'));
		o.default = 'refuse';
		o.depends('role', 'local');

		o = s.option(form.Value, 'max_connections', _('Connections at once'));
		o.datatype = 'range(1,1000000)';
		o.placeholder = '4096';

		o = s.option(form.ListValue, 'log_level', _('Log level'));
		[ 'error', 'warn', 'info', 'debug', 'trace' ].forEach((l) => o.value(l));
		o.default = 'info';

		s = m.section(form.GridSection, 'link', _('Links'),
			_('One per link between the routers: its OpenWrt network (followed when its device changes) or a Linux device, and router B\'s address on it.'));
		s.addremove = true;
		s.anonymous = true;
		s.nodescriptions = true;

		o = s.option(widgets.NetworkSelect, 'network', _('Network'));
		o.nocreate = true;
		o.optional = true;
		o.validate = function(section_id, value) {
			const device = this.section.formvalue(section_id, 'device');
			return fmt.linkChoiceError(value, device) ?? true;
		};

		o = s.option(widgets.DeviceSelect, 'device', _('Device'));
		o.noaliases = true;
		o.optional = true;

		o = s.option(form.DynamicList, 'peer', _('Router B on it'));
		o.datatype = 'ipaddr';

		o = s.option(form.Flag, 'backup', _('Backup'));

		return m.render().then((node) => {
			const problem = fmt.checkMessage(check);
			if (problem)
				node.insertBefore(E('div', { 'class': 'alert-message warning' }, [
					E('strong', _('The saved configuration has a mistake:')), ' ', problem
				]), node.firstChild);
			return node;
		});
	}
});
