-- Headless Neovim (0.7+) drives `specd lsp` through its own LSP client: open a buffer, edit it,
-- ask for textDocument/completion and a raw textDocument/inlineCompletion, and let a slow request time
-- out (the client then sends $/cancelRequest). Results go to $SPECD_NVIM_OUT as JSON.
local out_path = os.getenv("SPECD_NVIM_OUT")
local server_cmd = vim.fn.json_decode(os.getenv("SPECD_LSP_CMD"))
local result = {}

local function finish()
  local f = io.open(out_path, "w")
  f:write(vim.fn.json_encode(result))
  f:close()
  vim.cmd("qall!")
end

local ok, err = pcall(function()
  local client_id = vim.lsp.start_client({
    cmd = server_cmd,
    root_dir = vim.fn.getcwd(),
    init_options = { debounceMs = 0, maxTokens = 12, mode = "line" },
  })
  local buf = vim.api.nvim_create_buf(true, false)
  vim.api.nvim_buf_set_name(buf, vim.fn.getcwd() .. "/sample.py")
  vim.api.nvim_buf_set_option(buf, "filetype", "python")
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, { "def add(a, b):", "    x = '😀'" })
  vim.lsp.buf_attach_client(buf, client_id)
  local client = vim.lsp.get_client_by_id(client_id)
  vim.wait(10000, function() return client.initialized end, 20)
  result.initialized = client.initialized
  result.inline_provider = client.server_capabilities.inlineCompletionProvider ~= nil

  -- A real edit: Neovim sends it as an incremental didChange (UTF-16 columns, after the emoji).
  vim.api.nvim_buf_set_text(buf, 1, 14, 1, 14, { " + ret" })  -- byte columns
  result.buffer = vim.api.nvim_buf_get_lines(buf, 0, -1, false)
  local pos = { line = 1, character = 18 }  -- after "    x = '😀' + ret" in UTF-16 units
  local params = { textDocument = { uri = vim.uri_from_bufnr(buf) }, position = pos }

  local responses = vim.lsp.buf_request_sync(buf, "textDocument/completion", params, 30000)
  local completion = responses and responses[client_id] and responses[client_id].result
  result.completion_incomplete = completion and completion.isIncomplete
  result.completion_items = completion and #completion.items or -1

  params.context = { triggerKind = 1 }
  local inline_resp = client.request_sync("textDocument/inlineCompletion", params, 30000, buf)
  result.inline_error = inline_resp and inline_resp.err and inline_resp.err.message or vim.NIL
  local items = inline_resp and inline_resp.result and inline_resp.result.items or {}
  result.inline_items = #items
  if #items > 0 then
    result.inline_range = items[1].range
    result.inline_text = items[1].insertText
  end

  -- A long plain decode (hundreds of tokens, well over 100 ms) against a short timeout: request_sync gives up
  -- and cancels it while the daemon is decoding.
  -- As a user's config change does it: the client's settings change (Neovim answers the server's
  -- workspace/configuration pull from them), then the server is told.
  client.config.settings = { specd = { debounceMs = 0, maxTokens = 2000, draftTokens = 0, mode = "block" } }
  client.notify("workspace/didChangeConfiguration", { settings = client.config.settings })
  -- The document (from the test, SPECD_SLOW_LINES lines of `import os`) keeps the tiny model decoding for
  -- hundreds of tokens: long enough for the timeout.
  local slow_lines = tonumber(os.getenv("SPECD_SLOW_LINES"))
  local text = {}
  for i = 1, slow_lines do text[i] = "import os" end
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, text)
  local slow, slow_err = client.request_sync("textDocument/inlineCompletion",
    { textDocument = { uri = vim.uri_from_bufnr(buf) }, position = { line = slow_lines, character = 0 },
      context = { triggerKind = 1 } }, 100, buf)
  result.slow_result = slow == nil
  result.slow_debug = vim.inspect(slow)
  result.slow_error = slow_err or vim.NIL
  vim.wait(500)
  client.stop()
  vim.wait(5000, function() return client.is_stopped() end, 20)
end)
if not ok then result.lua_error = tostring(err) end
finish()
