//! The Lua scripts the fleet runs in Redis: each is one atomic step, so two replicas can never
//! both take the lease, and a replica whose lease has been taken over can change nothing.
//!
//! Times are Redis's own (`TIME`), so the replicas' clocks do not need to agree. The lease value
//! is `kind:token:replica`; the token is the `INCR` of the service's fence key at the time the
//! lease was taken, so a later lease always has a larger token.

/// Takes the lease if it is free (and, for an idle stop, if the fleet has been idle long enough
/// and has not stopped the backend already).
///
/// KEYS: lease, fence, activity, epoch, stopped, idle times. ARGV: replica, kind, ttl ms, idle
/// ms (0: no idle check), minimum epoch age ms, channel, service, a stopped mark to pass over
/// ("": none).
///
/// Idle means every replica's latest activity is as old as the asker's idle time and as its
/// own (as [`TOUCH`] recorded it): replicas may differ (a rolling update that changes it), and
/// one publishes its busy periods only every quarter of its own idle time, so a shorter idle
/// time elsewhere must not decide for it.
/// Returns `{1, value, token}` taken; `{0, value, pttl}` held by someone else;
/// `{2, who, ms}` not idle for `ms` more (who was active, or "epoch" when Redis restarted too
/// recently to tell); `{3, mark, pttl}` stopped by the fleet, and no lease taken since.
///
/// The stopped mark is the token of the stop that ended with the backend down (see
/// [`RELEASE`]); every lease taken since (a start's first) has a larger one. While the mark is
/// the fence, the replica asking most likely believes the backend up only because it has not
/// heard of that stop yet (announcements come late, or are lost with a listener's connection).
/// Unless the backend answers: then it was started since without a lease (by hand, or by a
/// replica that could not reach Redis), and the replica asks again passing over that mark.
pub(crate) const ACQUIRE: &str = r"
local held = redis.call('GET', KEYS[1])
if held then return {0, held, redis.call('PTTL', KEYS[1])} end
local idle = tonumber(ARGV[4])
if idle > 0 then
  local stopped = redis.call('GET', KEYS[5])
  if stopped and stopped == redis.call('GET', KEYS[2]) and stopped ~= ARGV[8] then
    return {3, stopped, redis.call('PTTL', KEYS[5])}
  end
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local epoch = tonumber(redis.call('GET', KEYS[4]) or now)
  local settle = tonumber(ARGV[5])
  if now - epoch < settle then return {2, 'epoch', settle - (now - epoch)} end
  local seen = redis.call('ZRANGE', KEYS[3], 0, -1, 'WITHSCORES')
  local who, wait = nil, 0
  for i = 1, #seen, 2 do
    local needed = math.max(idle, tonumber(redis.call('HGET', KEYS[6], seen[i]) or 0))
    local left = needed - (now - tonumber(seen[i + 1]))
    if left > wait then who, wait = seen[i], left end
  end
  if who then return {2, who, wait} end
end
local token = redis.call('INCR', KEYS[2])
local value = ARGV[2] .. ':' .. token .. ':' .. ARGV[1]
redis.call('SET', KEYS[1], value, 'PX', ARGV[3])
redis.call('PUBLISH', ARGV[6], ARGV[2] .. ' ' .. ARGV[1] .. ' ' .. ARGV[7])
return {1, value, token}
";

/// Extends the lease, if it is still this holder's and its token is still the latest.
///
/// KEYS: lease, fence. ARGV: value, token, ttl ms. Returns 1 extended, 0 lost.
pub(crate) const RENEW: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if tonumber(redis.call('GET', KEYS[2])) ~= tonumber(ARGV[2]) then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
";

/// Frees the lease and announces the state it ended in; a late holder (another token has been
/// issued since) changes nothing and announces nothing. A stop that ended with the backend down
/// leaves its token as the stopped mark, for `mark ms` (see [`ACQUIRE`]), in the same step as
/// the lease is freed: no idle stop can take the lease between the two.
///
/// KEYS: lease, fence, stopped. ARGV: value, token, channel, message, mark ms (0: no mark).
/// Returns 1 released, 0 not the holder.
pub(crate) const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if tonumber(redis.call('GET', KEYS[2])) ~= tonumber(ARGV[2]) then return 0 end
redis.call('DEL', KEYS[1])
if tonumber(ARGV[5]) > 0 then redis.call('SET', KEYS[3], ARGV[2], 'PX', ARGV[5]) end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
";

/// Frees a lease taken by this replica's own acquire after the replica had given up waiting for
/// it (Redis answered too late): nobody runs that start or stop, nor renews or frees its lease.
/// Sent on the same connection right after the acquire, so it runs after it.
///
/// KEYS: lease. ARGV: kind, replica, channel, message. Returns 1 freed, 0 no such lease.
pub(crate) const ABANDON: &str = r"
local held = redis.call('GET', KEYS[1])
if not held then return 0 end
local head = ARGV[1] .. ':'
local tail = ':' .. ARGV[2]
if string.sub(held, 1, #head) ~= head or string.sub(held, -#tail) ~= tail then return 0 end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
";

/// Records that `replica`, whose idle time is `idle`, was last active `offset` ms from now (0
/// or negative), never moving it back. Both keys live at least `keep` after the last write,
/// never less than another replica (with a longer idle time) asked for.
///
/// Drops every replica (this one included) last active more than twice the longest idle time
/// listed (this one's included) ago: a replica gone for good (a rolling update gives every
/// replica a new id) would otherwise stay listed for as long as the others keep the keys alive,
/// read by every call and warned of as an idle time that differs. Such an entry counts for no
/// stop any more: [`ACQUIRE`] asks each activity to be as old as the asker's idle time and as
/// the replica's own, and a listed asker's is at most the longest listed. (An asker that is not
/// listed, idle for twice its own idle time or never active, whose idle time is more than twice
/// the longest listed, then waits for a dropped replica's own idle time only, passed twice
/// over, rather than its own.)
/// A live replica keeps its entry while it matters: busy, it publishes at least every quarter
/// of its idle time plus a heartbeat (at most half of it); idle and dropped, it is listed again
/// at its next request, published at once (see `Activity::began`). Found through the sorted
/// set's order: the replicas still listed are the only ones read.
///
/// Returns `{}`, or `{replica, idle ms}` of another replica, still listed, whose idle time
/// differs.
///
/// KEYS: activity, idle times. ARGV: replica, offset ms, keep ms, idle ms.
pub(crate) const TOUCH: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local at = now + tonumber(ARGV[2])
local seen = redis.call('ZSCORE', KEYS[1], ARGV[1])
if (not seen) or tonumber(seen) < at then redis.call('ZADD', KEYS[1], at, ARGV[1]) end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
local keep = tonumber(ARGV[3])
for _, key in ipairs(KEYS) do
  if redis.call('PTTL', key) < keep then redis.call('PEXPIRE', key, keep) end
end
local idles = redis.call('HGETALL', KEYS[2])
local longest = 0
for i = 2, #idles, 2 do longest = math.max(longest, tonumber(idles[i])) end
local gone = {}
local before = string.format('(%d', now - 2 * longest)
for _, replica in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', before)) do
  redis.call('ZREM', KEYS[1], replica)
  redis.call('HDEL', KEYS[2], replica)
  gone[replica] = true
end
for i = 1, #idles, 2 do
  local other = idles[i]
  if other ~= ARGV[1] and not gone[other] and tonumber(idles[i + 1]) ~= tonumber(ARGV[4]) then
    return {other, idles[i + 1]}
  end
end
return {}
";

/// The heartbeat: the time this Redis first saw the fleet (set now if absent, so a restarted
/// Redis gets a new one), which tells the replicas to publish their activity again.
///
/// KEYS: epoch. Returns the epoch, in Redis ms.
pub(crate) const ALIVE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', KEYS[1], now, 'NX')
return tonumber(redis.call('GET', KEYS[1]))
";
