// A stand-in for netifd in the tests (NOT netifd): it publishes
// `network.interface.NAME` objects on the test's real ubusd whose `status`
// method answers as netifd's does (`up`, `l3_device`, `device`, `proto`),
// from a JSON file the test rewrites to bring a network up, down, or onto
// another device:
//
//   { "wwan": { "up": true, "l3_device": "wan0", "device": "wan0" }, ... }
//
// Run: ucode -L LIBDIR netifd-standin.uc SOCKET STATE_FILE
'use strict';

import * as ubus from 'ubus';
import * as uloop from 'uloop';
import { readfile } from 'fs';

const sock = ARGV[0], state_file = ARGV[1];

function state() {
	return json(readfile(state_file) ?? '{}') ?? {};
}

uloop.init();
let conn = ubus.connect(sock);
if (!conn)
	die(sprintf('cannot connect to ubusd at %s: %s\n', sock, ubus.error()));

let objects = [];
for (let name in keys(state())) {
	let network = name;
	push(objects, conn.publish('network.interface.' + network, {
		status: {
			call: function(req) {
				let s = state()[network];
				if (!s)
					return ubus.STATUS_NOT_FOUND;
				let reply = { up: !!s.up, pending: false, available: true, autostart: true,
					dynamic: false, proto: s.proto ?? 'dhcp', data: {} };
				if (s.up && s.l3_device)
					reply.l3_device = s.l3_device;
				if (s.device)
					reply.device = s.device;
				return reply;
			}
		}
	}));
}
// stderr: unbuffered, so the test sees it at once.
warn(sprintf('netifd stand-in: published %s\n', join(' ', keys(state()))));
uloop.run();
