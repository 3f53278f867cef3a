;;; specd-test-session.el --- what the Emacs drivers share  -*- lexical-binding: t; -*-

;; Loaded by specd-test-eglot.el and specd-test-lsp-mode.el, which tests/editors/test_emacs_headless.py
;; runs after the user's init file (that init file loads the shipped specd.el).  What Emacs shows is
;; written as JSON to $SPECD_EMACS_OUT.

(require 'json)

(defvar specd-test-result nil)

(defun specd-test-put (key value)
  (push (cons key value) specd-test-result))

(defun specd-test-wait (pred seconds)
  "Let processes and timers run until PRED holds or SECONDS pass; PRED's last value."
  (let ((deadline (+ (float-time) seconds)))
    (while (and (not (funcall pred)) (< (float-time) deadline))
      (accept-process-output nil 0.05))
    (funcall pred)))

(defun specd-test-text (buffer)
  (and buffer (with-current-buffer buffer (buffer-substring-no-properties (point-min) (point-max)))))

(defun specd-test-type-start-of-line ()
  "In the file's buffer, replace `pass' with `return js', typed key by key as a user types it."
  (goto-char (point-min))
  (search-forward "pass")
  (execute-kbd-macro (kbd "M-DEL"))
  (execute-kbd-macro "return js"))

(defun specd-test-run (session)
  "Open $SPECD_EMACS_FILE, call SESSION there, write what was recorded and leave Emacs."
  (condition-case err
      (progn
        (find-file (getenv "SPECD_EMACS_FILE"))
        (specd-test-put 'major-mode (symbol-name major-mode))
        (funcall session)
        (specd-test-put 'buffer (specd-test-text (current-buffer)))
        (specd-test-put 'before-point (buffer-substring-no-properties (line-beginning-position) (point))))
    (error (specd-test-put 'lisp-error (error-message-string err))))
  (specd-test-put 'messages (specd-test-text (messages-buffer)))
  (with-temp-file (getenv "SPECD_EMACS_OUT")
    (insert (json-encode specd-test-result)))
  (kill-emacs 0))

(provide 'specd-test-session)
;;; specd-test-session.el ends here
