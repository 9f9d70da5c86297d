package main

func (c *command) doctor(args []string) error {
	fs := c.flagSet("doctor", "")
	_, err := parseArgs(fs, args, 0, "")
	return err
}
