// better-sqlite3 loads its addon with require('bindings')('better_sqlite3.node'). The bundle
// maps the `bindings` module to this file (scripts/build.mjs), so that the addon is the one
// src/sys/native.ts finds: compiled on this machine, or prebuilt in the package.
'use strict';
module.exports = () => require('./native.ts').betterSqlite3Addon();
