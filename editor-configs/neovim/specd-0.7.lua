-- specd for Neovim 0.7 to 0.11: completions from `specd lsp` in the completion menu (<C-x><C-o>).
-- These versions have no ghost text; Neovim 0.12 does, with specd.lua.
--
-- Copy to ~/.config/nvim/plugin/specd.lua, or let `specd config neovim --write` put it there.
-- The daemon must be running: `specd start`.

local specd = {
  cmd = { "specd", "lsp" },
  settings = {
    specd = {
      enable = true,
      debounceMs = 75,
      maxTokens = 64,
      mode = "line", -- the menu shows one line per item well; "block" gives whole blocks
      excludedLanguages = {},
      warmUp = true, -- read the prompt where the cursor rests, before you ask (below)
    },
  },
}

local client_by_root = {}

-- Where the cursor rests (150 ms after a move, in any mode), tell specd (its `specd/didMoveCursor` hint): the
-- daemon reads the prompt there before you ask, so the first completion does not wait for it. `warmUp = false`
-- in the settings above turns that off.
local hint_timer = vim.loop.new_timer()

local function watch_cursor(client, bufnr)
  vim.api.nvim_create_autocmd({ "CursorMoved", "CursorMovedI", "BufEnter" }, {
    group = vim.api.nvim_create_augroup("specd_cursor_" .. bufnr, { clear = true }),
    buffer = bufnr,
    callback = function()
      hint_timer:stop()
      hint_timer:start(150, 0, vim.schedule_wrap(function()
        if client.is_stopped() or vim.api.nvim_get_current_buf() ~= bufnr then
          return
        end
        client.notify("specd/didMoveCursor", vim.lsp.util.make_position_params(0, client.offset_encoding))
      end))
    end,
  })
end

-- The menu puts in an item's `word`, which is not always all of specd's completion: Neovim 0.11 makes it the
-- text up to the first blank (`count_words("Hello,` for `count_words("Hello, World!")`), and 0.7 puts a
-- completion of several lines in as one line with ^@ for its line breaks. So once the menu closes on specd's
-- item (<C-y>, or typing on; not <C-e>), its whole text (textEdit.newText) goes in place of that word. specd's
-- items are those with detail "specd"; other servers' items are left as Neovim puts them in.
local function split_lines(text)
  return vim.split(text:gsub("\r\n?", "\n"), "\n", { plain = true })
end

local function complete_done(bufnr)
  local done = vim.v.completed_item
  local item = type(done) == "table" and vim.tbl_get(done, "user_data", "nvim", "lsp", "completion_item")
  if type(item) ~= "table" or item.detail ~= "specd" or type(item.textEdit) ~= "table"
      or type(done.word) ~= "string" or (vim.v.event or {}).reason == "cancel" then
    return
  end
  local text = item.textEdit.newText
  if done.word == text and not text:find("[\r\n]") then
    return -- all of it is in already
  end
  -- Where the word is: it ends at the cursor, on this line (0.7: line breaks as ^@) or over several lines.
  local row, col = unpack(vim.api.nvim_win_get_cursor(0))
  local line = vim.api.nvim_buf_get_lines(bufnr, row - 1, row, true)[1]
  local start_row, start_col = row, col - #done.word
  if start_col < 0 or line:sub(start_col + 1, col) ~= done.word:gsub("\n", "\0") then
    local parts = split_lines(done.word)
    start_row = row - #parts + 1
    local first = #parts > 1 and start_row >= 1 and vim.api.nvim_buf_get_lines(bufnr, start_row - 1, start_row, true)[1]
    if not first or first:sub(-#parts[1]) ~= parts[1] or vim.trim(line:sub(1, col)) ~= vim.trim(parts[#parts]) then
      return -- not the word: leave the text alone
    end
    start_col = #first - #parts[1]
  end
  local lines = split_lines(text)
  vim.api.nvim_buf_set_text(bufnr, start_row - 1, start_col, row - 1, col, lines)
  vim.api.nvim_win_set_cursor(0, { start_row + #lines - 1, (#lines == 1 and start_col or 0) + #lines[#lines] })
end

local function project_root(bufnr)
  local dir = vim.fn.fnamemodify(vim.api.nvim_buf_get_name(bufnr), ":p:h") -- attach() takes named buffers only
  local git = vim.fn.finddir(".git", dir .. ";")
  return git ~= "" and vim.fn.fnamemodify(git, ":p:h:h") or dir
end

local function attach(bufnr)
  -- Not special buffers, nor unnamed ones: every unnamed buffer has the URI "file://", so the server would take
  -- two of them for one document.
  if vim.bo[bufnr].buftype ~= "" or vim.api.nvim_buf_get_name(bufnr) == "" then
    return
  end
  local root = project_root(bufnr)
  local id = client_by_root[root]
  local client = id and vim.lsp.get_client_by_id(id)
  if not client or client.is_stopped() then
    -- One `specd lsp` per project, shared by its buffers.
    id = vim.lsp.start_client({
      name = "specd",
      cmd = specd.cmd,
      cmd_env = specd.cmd_env, -- `specd config neovim` sets it when specd runs under another SPECD_HOME
      root_dir = root,
      settings = specd.settings,
      on_init = function(client)
        -- Neovim 0.7 neither announces workspace/configuration nor sends the settings by itself;
        -- pushing them once the server is up does no harm on later versions.
        client.notify("workspace/didChangeConfiguration", { settings = client.config.settings })
      end,
      on_attach = function(client, attached)
        vim.bo[attached].omnifunc = "v:lua.vim.lsp.omnifunc"
        -- 0.11 puts in an item's text only up to its first blank (nothing for one that starts with a blank) and,
        -- by default, opens no menu for a single item: specd's one item would show nothing until taken. So
        -- the menu opens for one item too, where 'completeopt' does not say so already (this buffer only).
        if vim.fn.has("nvim-0.11") == 1 then
          local completeopt = vim.bo[attached].completeopt -- "" where the buffer has no value of its own
          completeopt = completeopt ~= "" and completeopt or vim.go.completeopt
          if not completeopt:find("menuone") then
            vim.bo[attached].completeopt = completeopt == "" and "menuone" or completeopt .. ",menuone"
          end
        end
        vim.api.nvim_create_autocmd("CompleteDone", {
          group = vim.api.nvim_create_augroup("specd_complete_" .. attached, { clear = true }),
          buffer = attached,
          callback = function()
            complete_done(attached)
          end,
        })
        watch_cursor(client, attached)
      end,
    })
    client_by_root[root] = id
  end
  if id then
    vim.lsp.buf_attach_client(bufnr, id)
  end
end

local group = vim.api.nvim_create_augroup("specd", { clear = true })
vim.api.nvim_create_autocmd("FileType", {
  group = group,
  pattern = "*",
  callback = function(args)
    attach(args.buf)
  end,
})
-- A file Neovim finds no filetype for (`NOTES`, `Jenkinsfile.local`) gets no FileType event: attach it once the
-- reading is done and detection has had its turn.
vim.api.nvim_create_autocmd({ "BufReadPost", "BufNewFile" }, {
  group = group,
  callback = function(args)
    vim.schedule(function()
      if vim.api.nvim_buf_is_valid(args.buf) and vim.bo[args.buf].filetype == "" then
        attach(args.buf)
      end
    end)
  end,
})
