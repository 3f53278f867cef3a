;;; specd.el --- completions from the local specd daemon, through eglot or lsp-mode  -*- lexical-binding: t; -*-

;; Works with either of Emacs's LSP clients; the daemon must be running (`specd start`).
;;
;; - eglot (built into Emacs 29; the `eglot' package, Debian's elpa-eglot, on Emacs 26.3 to 28):
;;   specd's suggestion in the completion menu (C-M-i, C-c s, company, corfu).  Eglot runs one server per
;;   buffer: in the modes of `specd-eglot-modes', M-x eglot starts specd instead of the usual server.
;; - lsp-mode 9.0.1 or later (lsp-inline-completion.el): ghost text, beside your usual language server.
;;
;; Load it from your init file: (load "/path/to/specd.el"), or paste it there.

(defgroup specd nil
  "Local code completion from specd."
  :group 'tools)

(defcustom specd-command '("specd" "lsp")
  "How to start specd's language server."
  :type '(repeat string)
  :group 'specd)

(defcustom specd-eglot-modes '(prog-mode)
  "Major modes (and the modes derived from them) for which M-x eglot starts specd.
nil leaves eglot's own choice of server alone.  Set it before this file is loaded."
  :type '(repeat symbol)
  :group 'specd)

(defcustom specd-eglot-settings
  '(:enable t :debounceMs 75 :maxTokens 64 :warmUp t
    ;; The menu shows one line per item well; "block" gives whole blocks.
    :mode "line")
  "specd's settings under eglot, sent as initializationOptions (same keys as VS Code's)."
  :type 'plist
  :group 'specd)

(defun specd-complete ()
  "Ask specd for a completion at point now.
Ghost text under lsp-mode, the completion menu under eglot."
  (interactive)
  (if (and (bound-and-true-p lsp-mode) (fboundp 'lsp-inline-completion-display))
      (lsp-inline-completion-display)
    (completion-at-point)))

(global-set-key (kbd "C-c s") #'specd-complete)

;;;; eglot

(defun specd--eglot-contact (&rest _)
  "The `eglot-server-programs' entry for specd: its command and its settings.
Eglot calls it with INTERACTIVE, and newer versions with PROJECT too."
  (append specd-command (list :initializationOptions (list :specd specd-eglot-settings))))

(with-eval-after-load 'eglot
  (when specd-eglot-modes
    ;; In front of eglot's own entries, so that it wins for these modes.
    (add-to-list 'eglot-server-programs (cons specd-eglot-modes #'specd--eglot-contact))))

;; Where point rests, tell specd (its `specd/didMoveCursor' notification): the daemon reads the prompt there
;; before you ask, so the first completion after opening a file or jumping does not wait for it.

(defcustom specd-cursor-hint-delay 0.15
  "Seconds point must rest before specd is told where it is; nil never tells it.
The server's `warmUp' setting (in `specd-eglot-settings') can turn the warm-up off as well."
  :type '(choice (const :tag "Never" nil) number)
  :group 'specd)

(defvar specd--hint-timer nil)

(defun specd--eglot-server ()
  "The current buffer's eglot server when it is specd's, else nil."
  (let ((server (and (bound-and-true-p eglot--managed-mode) (eglot-current-server))))
    (and server
         (equal (plist-get (ignore-errors (eglot--server-info server)) :name) "specd")
         server)))

(defun specd--send-cursor-hint (buffer position)
  "Send the hint for POSITION in BUFFER, if point is still there."
  (when (and (eq buffer (current-buffer)) (= position (point)))
    (let ((server (specd--eglot-server)))
      (when server
        (jsonrpc-notify server :specd/didMoveCursor (eglot--TextDocumentPositionParams))))))

(defun specd--schedule-cursor-hint ()
  (when specd--hint-timer
    (cancel-timer specd--hint-timer)
    (setq specd--hint-timer nil))
  (when (and specd-cursor-hint-delay (bound-and-true-p eglot--managed-mode))
    (setq specd--hint-timer
          (run-at-time specd-cursor-hint-delay nil #'specd--send-cursor-hint (current-buffer) (point)))))

(add-hook 'post-command-hook #'specd--schedule-cursor-hint)

;;;; lsp-mode 9.0.1 and later: ghost text

;; nil, without loading anything, where lsp-mode is missing or older than 9.0.1.
(require 'lsp-inline-completion nil t)

(when (featurep 'lsp-inline-completion)
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
  ;; While it shows, lsp-mode's keys apply: C-<return> accepts, C-n / C-p switch, C-g dismisses.
  (setq lsp-inline-completion-enable t
        lsp-inline-completion-idle-delay 0.3))

(unless (or (featurep 'lsp-inline-completion) (locate-library "eglot"))
  (display-warning 'specd "specd.el needs eglot, or lsp-mode 9.0.1 or later; neither is installed"))

(provide 'specd)
;;; specd.el ends here
