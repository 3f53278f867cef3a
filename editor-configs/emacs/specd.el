;;; specd.el --- ghost text from the local specd daemon, through lsp-mode  -*- lexical-binding: t; -*-

;; Needs lsp-mode 9.0.1 or later (lsp-inline-completion.el) and a running daemon (`specd start`).
;; Load it from your init file: (load "/path/to/specd.el"), or paste it there.

(require 'lsp-mode)
(require 'lsp-inline-completion)

(defgroup specd nil
  "Local code completion from specd."
  :group 'lsp-mode)

(defcustom specd-command '("specd" "lsp")
  "How to start specd's language server."
  :type '(repeat string)
  :group 'specd)

;; The server reads these through workspace/configuration, section "specd" (same keys as VS Code's).
(lsp-register-custom-settings
 '(("specd.enable" t t)
   ("specd.debounceMs" 75)
   ("specd.maxTokens" 64)
   ("specd.mode" "auto")))

(lsp-register-client
 (make-lsp-client
  :new-connection (lsp-stdio-connection (lambda () specd-command))
  :activation-fn (lambda (&rest _) t)
  :server-id 'specd
  ;; Runs beside the buffer's usual language server instead of replacing it.
  :add-on? t
  :priority -1
  :initialized-fn (lambda (workspace)
                    (with-lsp-workspace workspace
                      (lsp--set-configuration (lsp-configuration-section "specd"))))))

;; Ask for ghost text after a short pause in typing; lsp-mode's own default waits 2 seconds.
(setq lsp-inline-completion-enable t
      lsp-inline-completion-idle-delay 0.3)

;; While a completion is shown: <tab> cycles, <return> accepts, C-g dismisses (lsp-mode's keys).
(define-key lsp-inline-completion-active-map (kbd "C-<return>") #'lsp-inline-completion-accept)
(global-set-key (kbd "C-c s") #'lsp-inline-completion-display)

(provide 'specd)
;;; specd.el ends here
