'use strict';
// The package: KatoClient and its sessions (client.js) over the contract kato.js loads.
module.exports = { ...require('./kato'), ...require('./client') };
