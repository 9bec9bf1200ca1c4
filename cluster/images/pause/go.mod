module msalab.local/pause

go 1.24
