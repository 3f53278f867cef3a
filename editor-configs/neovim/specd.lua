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
    },
  },
})
vim.lsp.enable("specd")
vim.lsp.inline_completion.enable()

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
