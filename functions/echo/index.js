// Returns what it received. Called through /web (the event has `method` and `headers`), it
// answers an HTTP response whose body is the request event as JSON.
const isWeb = (e) => !!e && typeof e === 'object' && typeof e.method === 'string' && !!e.headers && typeof e.headers === 'object';

exports.handler = async (event, context) => {
  if (isWeb(event)) {
    return { statusCode: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify(event) };
  }
  return { event, context };
};
