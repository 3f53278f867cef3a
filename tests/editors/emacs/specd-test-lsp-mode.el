;;; specd-test-lsp-mode.el --- an lsp-mode user's session with specd.el  -*- lexical-binding: t; -*-

;; Open a Python file, M-x lsp, type the start of a line, C-c s shows ghost text, C-Return accepts it.

(load (expand-file-name "specd-test-session.el" (file-name-directory load-file-name)) nil t)

(if (not (featurep 'lsp-inline-completion))     ; specd.el loads it where lsp-mode has it
    (progn (specd-test-put 'no-lsp-mode (format "Emacs %s has no lsp-inline-completion" emacs-version))
           (specd-test-run #'ignore))
  ;; A user's answers to lsp-mode's questions: the project root is the git folder; download nothing.
  (setq lsp-auto-guess-root t
        lsp-enable-suggest-server-download nil)
  (specd-test-run
   (lambda ()
     (call-interactively #'lsp)         ; M-x lsp
     (specd-test-wait (lambda () (and (lsp-workspaces)
                                      (eq (lsp--workspace-status (car (lsp-workspaces))) 'initialized)))
                      60)
     (specd-test-put 'workspaces (mapcar (lambda (w) (symbol-name (lsp--client-server-id (lsp--workspace-client w))))
                                         (lsp-workspaces)))
     (specd-test-put 'enabled lsp-inline-completion-enable)
     (specd-test-put 'idle-delay lsp-inline-completion-idle-delay)
     (specd-test-type-start-of-line)
     (execute-kbd-macro (kbd "C-c s"))
     (specd-test-put 'ghost-text (and (specd-test-wait #'lsp-inline-completion--active-p 30) t))
     (specd-test-put 'buffer-shown (specd-test-text (current-buffer)))
     (execute-kbd-macro (kbd "C-<return>")))))
;;; specd-test-lsp-mode.el ends here
