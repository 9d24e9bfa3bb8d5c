module l4proxy

go 1.21
