"""anec's ANE simulator: `functional` executes decoded descriptor programs, `timing` costs them."""
