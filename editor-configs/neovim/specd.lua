-- specd for Neovim 0.12 and later: ghost text from `specd lsp` (textDocument/inlineCompletion).
--
-- Copy to ~/.config/nvim/plugin/specd.lua (Neovim runs every file there at startup), paste it into
-- init.lua, or let `specd config neovim --write` put it there. The daemon must be running: `specd start`.
-- For Neovim 0.7 to 0.11 use specd-0.7.lua instead (completion menu only).

vim.lsp.config("specd", {
  cmd = { "specd", "lsp" },
  root_markers = { ".git" },
  -- No `filetypes`: every language gets completions; `excludedLanguages` below turns some off.
  settings = {
    -- Sent to the server through workspace/configuration, section "specd" (same keys as VS Code's).
    specd = {
      enable = true,
      debounceMs = 75,
      maxTokens = 64,
      mode = "auto", -- "line": never past the end of the line; "block": whole blocks
      excludedLanguages = {},
      warmUp = true, -- read the prompt where the cursor rests, before you ask (below)
    },
  },
})
vim.lsp.enable("specd")
vim.lsp.inline_completion.enable()

-- vim.lsp.enable attaches on the FileType event, which a file Neovim finds no filetype for (`NOTES`) never gets:
-- start specd there once the reading is done and detection has had its turn.
vim.api.nvim_create_autocmd({ "BufReadPost", "BufNewFile" }, {
  group = vim.api.nvim_create_augroup("specd_no_filetype", { clear = true }),
  callback = function(args)
    vim.schedule(function()
      local buf = args.buf
      if not vim.api.nvim_buf_is_valid(buf) or vim.bo[buf].filetype ~= "" or vim.bo[buf].buftype ~= "" then
        return
      end
      local config = vim.lsp.config.specd
      local name = vim.api.nvim_buf_get_name(buf)
      local root = vim.fs.root(buf, config.root_markers or {}) or vim.fs.dirname(name)
      vim.lsp.start(vim.tbl_extend("force", config, { root_dir = root }), { bufnr = buf })
    end)
  end,
})

-- Where the cursor rests (150 ms after a move, in any mode), tell specd (its `specd/didMoveCursor` hint): the
-- daemon reads the prompt there before you type, so the first completion does not wait for it. `warmUp = false`
-- in the settings above turns that off.
local hint_timer = (vim.uv or vim.loop).new_timer()
vim.api.nvim_create_autocmd("LspAttach", {
  group = vim.api.nvim_create_augroup("specd_cursor", { clear = true }),
  callback = function(args)
    local client = vim.lsp.get_client_by_id(args.data.client_id)
    if not client or client.name ~= "specd" then
      return
    end
    vim.api.nvim_create_autocmd({ "CursorMoved", "CursorMovedI", "BufEnter" }, {
      group = vim.api.nvim_create_augroup("specd_cursor_" .. args.buf, { clear = true }),
      buffer = args.buf,
      callback = function()
        hint_timer:stop()
        hint_timer:start(150, 0, vim.schedule_wrap(function()
          if client:is_stopped() or vim.api.nvim_get_current_buf() ~= args.buf then
            return
          end
          client:notify("specd/didMoveCursor", vim.lsp.util.make_position_params(0, client.offset_encoding))
        end))
      end,
    })
  end,
})

-- <Tab> takes the ghost text; when there is none it is a plain <Tab>.
vim.keymap.set("i", "<Tab>", function()
  if not vim.lsp.inline_completion.get() then
    return "<Tab>"
  end
end, { expr = true, replace_keycodes = true, desc = "specd: accept the completion" })

-- Alt-] / Alt-[ step through the alternatives when the server sends more than one.
vim.keymap.set("i", "<M-]>", function()
  vim.lsp.inline_completion.select({ count = 1 })
end, { desc = "specd: next completion" })
vim.keymap.set("i", "<M-[>", function()
  vim.lsp.inline_completion.select({ count = -1 })
end, { desc = "specd: previous completion" })
