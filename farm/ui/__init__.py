"""What people see: the command line, live progress, the HTML report."""
