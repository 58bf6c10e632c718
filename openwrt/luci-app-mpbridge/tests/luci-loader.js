// Loads a LuCI JavaScript module in node as LuCI's loader does: the file's
// text is the body of a function whose parameters are `window`,
// `document`, `L` and the modules its 'require NAME [as ALIAS]' lines
// name; it must return a class, which LuCI instantiates. The tests pass
// stand-ins for the required modules (LuCI's own are not here).
'use strict';

const fs = require('node:fs');
const path = require('node:path');

const RESOURCES = path.join(__dirname, '../htdocs/luci-static/resources');

// A minimal baseclass: extend() gives a constructor whose prototype holds
// the properties, as LuCI's does (without super calls).
const baseclass = {
	extend(props) {
		const C = function() {};
		C.prototype = Object.assign(Object.create(null), props);
		C.extend = baseclass.extend;
		return C;
	}
};

// The 'require' lines of a module: [[name, alias], ...].
function requires(src) {
	const out = [];
	for (const m of src.matchAll(/^'require ([\w.]+)(?: as (\w+))?';$/gm))
		out.push([ m[1], m[2] ?? m[1] ]);
	return out;
}

// Loads resources/RELPATH with `modules` ({ name: instance }) for its
// requires; returns the instance.
function load(relpath, modules = {}) {
	const src = fs.readFileSync(path.join(RESOURCES, relpath), 'utf8');
	const reqs = requires(src);
	const args = reqs.map(([ name ]) => {
		if (name == 'baseclass')
			return baseclass;
		if (!(name in modules))
			throw new Error(relpath + ' requires ' + name + ', which the test does not provide');
		return modules[name];
	});
	const factory = new Function('window', 'document', 'L', ...reqs.map(([ , alias ]) => alias), src);
	const cls = factory(undefined, undefined, undefined, ...args);
	if (typeof cls != 'function')
		throw new Error(relpath + ' did not return a class');
	return new cls();
}

module.exports = { load, requires, baseclass };
