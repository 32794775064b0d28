// Uses a dependency bundled in the package (node_modules/slugify), as on Lambda.
const slugify = require('slugify');

exports.handler = async (event) => ({ slug: slugify(String((event && event.text) || ''), { lower: true }) });
