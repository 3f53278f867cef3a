;;; specd-test-eglot.el --- an eglot user's session with specd.el  -*- lexical-binding: t; -*-

;; Open a Python file, M-x eglot, let point rest on a line, type the start of it, C-c s (specd.el's key).

(load (expand-file-name "specd-test-session.el" (file-name-directory load-file-name)) nil t)

(if (not (locate-library "eglot"))
    (progn (specd-test-put 'no-eglot (format "Emacs %s has no eglot" emacs-version))
           (specd-test-run #'ignore))
  (specd-test-run
   (lambda ()
     (call-interactively #'eglot)       ; M-x eglot
     (specd-test-put 'managed (and (specd-test-wait (lambda () (and (bound-and-true-p eglot--managed-mode)
                                                                    (eglot-current-server)))
                                                    60)
                                   t))
     (let ((server (eglot-current-server)))
       (when server
         (specd-test-put 'server-command (process-command (jsonrpc--process server)))
         ;; Point rests after the indentation of the `pass' line first: specd.el tells the server.
         (goto-char (point-min))
         (search-forward "pass")
         (execute-kbd-macro (kbd "M-m"))
         (specd-test-wait (lambda () nil) 1.5)
         (specd-test-type-start-of-line)
         (execute-kbd-macro (kbd "C-c s"))
         (specd-test-put 'events (specd-test-text (jsonrpc-events-buffer server)))
         (specd-test-put 'stderr (specd-test-text (jsonrpc-stderr-buffer server))))))))
;;; specd-test-eglot.el ends here
