// The ssd1b command-line tool.
