-- Dovecot 2.4 passdb/userdb backed by couchmail's HTTP endpoint.
--
--   passdb lua { lua_file = /etc/dovecot/couchmail-auth.lua
--                lua_settings { couchmail_url = http://127.0.0.1:8080
--                               couchmail_token_file = /run/secrets/couchmail-token } }
--   userdb prefetch { }
--   userdb lua { lua_file = /etc/dovecot/couchmail-auth.lua
--                lua_settings { couchmail_url = http://127.0.0.1:8080 } }
--
-- couchmail answers 200 with Dovecot's field names (password, userdb_*), 404 for an
-- unknown or disabled user, 503 until its first load. Anything but 200/404 is a
-- temporary failure, never "unknown user": mail must be deferred, not bounced.
local json = require "cjson"

local base_url = "http://127.0.0.1:8080"
local token = nil
local client = nil

local function urlencode(s)
  return (s:gsub("[^A-Za-z0-9._~-]", function(c) return string.format("%%%02X", string.byte(c)) end))
end

function script_init(args)
  args = args or {}
  if args.couchmail_url and args.couchmail_url ~= "" then base_url = args.couchmail_url:gsub("/+$", "") end
  if args.couchmail_token_file and args.couchmail_token_file ~= "" then
    local f = io.open(args.couchmail_token_file, "r")
    if f == nil then return 1 end
    token = f:read("*a"):gsub("%s+$", "")
    f:close()
  end
  client = dovecot.http.client {
    request_absolute_timeout = "5s",
    request_max_attempts = 2,
    user_agent = "dovecot-couchmail",
  }
  return 0
end

function script_deinit() end

-- Returns the HTTP status and the decoded JSON body (or nil).
local function fetch(kind, user)
  local req = client:request { url = base_url .. "/dovecot/" .. kind .. "/" .. urlencode(user) }
  if token then req:add_header("Authorization", "Bearer " .. token) end
  local res = req:submit()
  local status = res:status()
  if status ~= 200 then return status, nil end
  local ok, body = pcall(json.decode, res:payload())
  if not ok or type(body) ~= "table" then return 502, nil end
  -- Dovecot wants strings.
  local fields = {}
  for k, v in pairs(body) do fields[k] = tostring(v) end
  return 200, fields
end

function auth_passdb_lookup(req)
  local status, fields = fetch("passdb", req.user)
  if status == 200 then return dovecot.auth.PASSDB_RESULT_OK, fields end
  if status == 404 then return dovecot.auth.PASSDB_RESULT_USER_UNKNOWN, "no such user" end
  return dovecot.auth.PASSDB_RESULT_INTERNAL_FAILURE, "couchmail answered HTTP " .. tostring(status)
end

function auth_userdb_lookup(req)
  local status, fields = fetch("userdb", req.user)
  if status == 200 then return dovecot.auth.USERDB_RESULT_OK, fields end
  if status == 404 then return dovecot.auth.USERDB_RESULT_USER_UNKNOWN, "no such user" end
  return dovecot.auth.USERDB_RESULT_INTERNAL_FAILURE, "couchmail answered HTTP " .. tostring(status)
end

-- Without these Dovecot's auth cache never caches Lua results; with auth_cache_* set it
-- also keeps users logged in through a short couchmail outage.
function auth_passdb_get_cache_key()
  return "%{user}"
end

function auth_userdb_get_cache_key()
  return "%{user}"
end
