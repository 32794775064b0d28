exports.handler = async (event) => ({ message: 'Hello, ' + ((event && event.name) || 'world') + '!' });
