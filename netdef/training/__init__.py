"""Training as Caffe does it: the solvers and learning-rate policies (solver), the data layers'
sources (data), and the Solver::Step loop with test nets, snapshots and logs (train)."""
