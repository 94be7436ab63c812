// Benchmark baseline "floor": forwards method, path + query, headers and body to ORIGIN_URL and
// returns the origin's answer as it is. No framework, no validation, no storage.
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    return fetch(env.ORIGIN_URL + url.pathname + url.search, {
      method: request.method,
      headers: request.headers,
      body: request.body,
      redirect: 'manual',
    });
  },
};
