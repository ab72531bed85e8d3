"""Workers: jobs, the evaluation of tasks against the rules, and the policies themselves."""
