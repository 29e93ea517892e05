// Preloaded into peers that cannot be told where to listen: every server binds 127.0.0.1.
const net = require("net");
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === "number" || typeof args[0] === "string") {
    const cb = args.find((a) => typeof a === "function");
    return cb ? listen.call(this, Number(args[0]), "127.0.0.1", cb) : listen.call(this, Number(args[0]), "127.0.0.1");
  }
  if (args[0] && typeof args[0] === "object") {
    args[0] = { ...args[0], host: "127.0.0.1" };
  }
  return listen.apply(this, args);
};
