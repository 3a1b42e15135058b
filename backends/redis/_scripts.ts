// Copyright 2026 the @eventbus/core authors. MIT license.
// The Lua scripts that add entries to an event stream of the Redis Streams
// backend: the publish (de-duplicated by event id) and the replay of a dead
// letter (past that de-duplication, for one handler name). Both make room
// the same way, by trimming only what every consumer group acknowledged.

/**
 * The field of a stream entry that names the only handler to run it: a
 * replayed dead letter's copy. Readers of every other group acknowledge it
 * without running it.
 */
export const TARGET_FIELD = "target";

/**
 * `room(stream, limit)`: nil when the stream has room for one more entry
 * (`limit` `''`: no bound), else `{length, slowest group}`. The stream is
 * full when it holds `limit` entries after trimming (`XTRIM MINID`) what
 * every consumer group has acknowledged: a group's low-water mark is its
 * oldest pending entry, or its last-delivered id when nothing is pending.
 * A stream without groups is never trimmed.
 */
const ROOM = `
local function room(stream, limit)
  if limit == '' then return nil end
  limit = tonumber(limit)
  if redis.call('XLEN', stream) < limit then return nil end
  local function parse(id)
    local ms, seq = string.match(id, '^(%d+)-(%d+)$')
    return tonumber(ms), tonumber(seq)
  end
  local function before(a, b)
    local am, as = parse(a)
    local bm, bs = parse(b)
    return am < bm or (am == bm and as < bs)
  end
  local low, slowest = nil, ''
  for _, group in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    local info = {}
    for i = 1, #group, 2 do info[group[i]] = group[i + 1] end
    local mark = info['last-delivered-id']
    if info['pending'] > 0 then
      mark = redis.call('XPENDING', stream, info['name'])[2]
    end
    if low == nil or before(mark, low) then
      low, slowest = mark, info['name']
    end
  end
  if low ~= nil then redis.call('XTRIM', stream, 'MINID', low) end
  local length = redis.call('XLEN', stream)
  if length >= limit then return { length, slowest } end
  return nil
end
`;

/**
 * Adds a batch of entries, in order, each as one publish would: unless its
 * event id was published within the window, and unless its stream is full
 * (see `room`). KEYS: per entry, its stream and its id's marker key; ARGV:
 * maxLen (`''`: no bound), the window in ms (`'0'`: off), then the events.
 * Replies one item per entry: the new entry's id; 0 for a duplicate;
 * `{length, slowest group}` when its stream is full; `{-1, error}` when
 * Redis refused the XADD. The marker is taken first (`SET NX`, which also
 * tells a duplicate) and deleted again when the entry is not added, so an
 * event that was refused or found the stream full can be published again.
 * Each stream's length is read once per batch and counted on; a stream
 * found full stays full for the rest of the batch (nothing in one script
 * acknowledges entries), so `room` runs its trim once per stream and batch.
 */
export const PUBLISH_SCRIPT: string = `${ROOM}
local limit, window = ARGV[1], ARGV[2]
local bound = tonumber(limit)
local replies, full, lengths = {}, {}, {}
local function fits(stream)
  if bound == nil then return true end
  if full[stream] then return false end
  local length = lengths[stream] or redis.call('XLEN', stream)
  if length >= bound then
    full[stream] = room(stream, limit)
    if full[stream] then return false end
    length = redis.call('XLEN', stream)
  end
  lengths[stream] = length
  return true
end
for i = 1, #KEYS / 2 do
  local stream, marker = KEYS[2 * i - 1], KEYS[2 * i]
  local reply
  if window ~= '0' and not redis.call('SET', marker, '1', 'PX', window, 'NX') then
    reply = 0
  elseif not fits(stream) then
    reply = full[stream]
  else
    reply = redis.pcall('XADD', stream, '*', 'event', ARGV[i + 2])
    if type(reply) == 'table' and reply.err then
      reply = { -1, reply.err }
    elseif bound ~= nil then
      lengths[stream] = lengths[stream] + 1
    end
  end
  if type(reply) == 'table' and window ~= '0' then redis.call('DEL', marker) end
  replies[i] = reply
end
return replies
`;

/**
 * Replays one dead letter, atomically: adds a copy of its event to the
 * event stream for one handler name (the target field), past the
 * de-duplication marker of the event id, then deletes the dead letter, in
 * that order: when the XADD fails, the dead letter stays. KEYS: the
 * dead-letter stream, the event stream; ARGV: the dead letter's id, the
 * handler name, the event, maxLen (`''`: no bound). Replies the copy's id;
 * 0 when the dead letter is gone (replayed or purged meanwhile, so a
 * second replay adds nothing); -1 when no consumer group of that name reads
 * the stream (the copy would reach nobody, so the dead letter stays); or
 * `{length, slowest group}` when the stream is full.
 */
export const REPLAY_SCRIPT: string = `${ROOM}
local dead, stream = KEYS[1], KEYS[2]
if #redis.call('XRANGE', dead, ARGV[1], ARGV[1]) == 0 then return 0 end
if redis.call('EXISTS', stream) == 0 then return -1 end
local known = false
for _, group in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
  for i = 1, #group, 2 do
    if group[i] == 'name' and group[i + 1] == ARGV[2] then known = true end
  end
end
if not known then return -1 end
local full = room(stream, ARGV[4])
if full then return full end
local id = redis.call('XADD', stream, '*', 'event', ARGV[3],
  '${TARGET_FIELD}', ARGV[2], 'replay-of', ARGV[1])
redis.call('XDEL', dead, ARGV[1])
return id
`;
