// A no-op handler that a stem cell calls once before it is frozen (see bootstrap.js: /warm).
'use strict';
exports.handler = (event) => event;
