module memwatch.test/gomem

go 1.19
